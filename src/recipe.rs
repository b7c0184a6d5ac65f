//! Stage 1: recipes and the pinning policy.
//!
//! Reads `base/base.toml` (the common base image) and `recipes/*.toml` (the
//! images built on it), checks every input is pinned, and returns a
//! [`Tree`]. All violations of all files are collected and reported at once,
//! each with `file:line:column` and a hint; nothing is written.
//!
//! The format is documented in `docs/recipes.md`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The name the common base is referred to by in `from`.
pub const BASE_REF: &str = "base";

/// One problem found in a recipe, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The recipe file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error: {}\n  --> {}:{}:{}\n  help: {}",
            self.message,
            self.file.display(),
            self.line,
            self.column,
            self.help
        )
    }
}

/// Every problem found in a recipe tree.
#[derive(Debug, thiserror::Error)]
pub struct RecipeErrors(pub Vec<Diagnostic>);

impl fmt::Display for RecipeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "{} problem{} found; nothing was written",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )
    }
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    image: RawImage,
    source: Option<Spanned<RawSource>>,
    #[serde(default)]
    packages: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    config: RawConfig,
    #[serde(default)]
    files: Vec<Spanned<RawFileAdd>>,
    build: Option<RawBuild>,
    #[serde(default)]
    copy: Vec<Spanned<RawCopy>>,
    configure: Option<Spanned<RawConfigure>>,
    #[serde(default)]
    debconf: BTreeMap<String, String>,
    cache: Option<Spanned<RawCache>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCache {
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfigure {
    #[serde(default)]
    toolset: BTreeMap<String, Spanned<toml::Value>>,
    essential: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImage {
    name: Spanned<String>,
    tag: Spanned<String>,
    from: Option<Spanned<String>>,
    from_layout: Option<Spanned<String>>,
    source_date_epoch: Option<Spanned<i64>>,
    configure: Option<bool>,
    essential: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSource {
    mirror: Option<String>,
    #[serde(default = "default_true")]
    apt: bool,
    arch: Option<String>,
    /// OCI platforms (`linux/arm64`); one for now, the same as `arch`.
    platforms: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_distro")]
    distro: String,
    #[serde(default)]
    archive: Vec<RawArchive>,
    snapshot: Option<RawSnapshot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawArchive {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
    keyring: Option<String>,
    #[serde(default)]
    trusted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSnapshot {
    timestamp: String,
    url: String,
}

fn default_true() -> bool {
    true
}
fn default_arch() -> String {
    "amd64".into()
}
fn default_distro() -> String {
    "debian-12".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    workdir: Option<String>,
    user: Option<String>,
    #[serde(default)]
    expose: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    stop_signal: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFileAdd {
    src: String,
    dest: String,
    mode: Option<String>,
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBuild {
    #[serde(default)]
    packages: BTreeMap<String, Spanned<toml::Value>>,
    context: Option<String>,
    steps: Vec<Spanned<RawStep>>,
    artifacts: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Per-step wall-clock limit, e.g. "30m" (default: 30m).
    timeout: Option<String>,
    /// Per-step memory limit, e.g. "2G" (default: 4G).
    memory: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStep {
    Shell(String),
    Exec(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCopy {
    from: String,
    to: String,
    mode: Option<String>,
    owner: Option<String>,
}

// ---------------------------------------------------------------- checked model

/// Where an image starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// An empty root filesystem (only for the base).
    Scratch,
    /// The common base image.
    Base,
    /// An image pinned by digest, read from a local OCI layout.
    Pinned {
        /// `name@sha256:...` as written.
        reference: String,
        /// The manifest digest, `sha256:<hex>`.
        digest: String,
        /// The OCI layout directory holding it (resolved path).
        layout: Option<PathBuf>,
    },
}

/// Where packages come from (only `base/base.toml` may say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// A local mirror (flat repository or directory of `.deb`s).
    pub mirror: Option<PathBuf>,
    /// Whether `apt-get download` may fetch pinned packages the mirror lacks.
    pub apt: bool,
    /// Debian architecture, e.g. `amd64`.
    pub arch: String,
    /// Distribution qualifier for package URLs, e.g. `debian-12`.
    pub distro: String,
    /// `[[source.archive]]`: Debian archives (else the host's apt config).
    pub archives: Vec<crate::archive::sources::ArchiveSource>,
    /// `[source.snapshot]`: where versions gone from the archives are found.
    pub snapshot: Option<crate::archive::sources::Snapshot>,
    /// `[cache]`: the remote step cache the base recipe names.
    pub cache: CacheTable,
}

/// The base recipe's `[cache]`: registry repositories (`REGISTRY/REPO`)
/// the build reads step results from (`from`) and uploads them to (`to`,
/// read too); `--cache-from`/`--cache-to` win, `--no-remote-cache`
/// ignores it (see `crate::plan::remote`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheTable {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            mirror: None,
            apt: true,
            arch: default_arch(),
            distro: default_distro(),
            archives: Vec::new(),
            snapshot: None,
            cache: CacheTable::default(),
        }
    }
}

/// Image configuration (OCI `config` fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `port/proto`, sorted.
    pub expose: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

/// Numeric owner `uid:gid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// A file from the recipe directory added to the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAdd {
    /// Absolute path of the source file on this machine.
    pub src: PathBuf,
    /// Path inside the image (relative, no leading `/`).
    pub dest: String,
    pub mode: Option<u32>,
    pub owner: Owner,
}

/// One step of a build stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run through `/bin/sh -c`.
    Shell(String),
    /// Run this argv directly.
    Exec(Vec<String>),
}

impl Step {
    /// The argv the sandbox runs.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Step::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Step::Exec(v) => v.clone(),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Shell(s) => f.write_str(s),
            Step::Exec(v) => write!(f, "{}", v.join(" ")),
        }
    }
}

/// A build stage: compiled in a sandbox, only artifacts ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStage {
    /// Build-only packages, name -> exact version.
    pub packages: BTreeMap<String, String>,
    /// The context directory (absolute), mounted at `/src` in the sandbox.
    pub context: Option<PathBuf>,
    pub steps: Vec<Step>,
    /// Paths or globs inside the build root (absolute, e.g. `/out/hello`).
    pub artifacts: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Time and memory limits of each step.
    pub limits: crate::limits::StepLimits,
}

/// Copy of a build artifact into the runtime image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Artifact path (or glob) in the build root.
    pub from: String,
    /// Destination in the image: a file path, or a directory ending in `/`.
    pub to: String,
    pub mode: Option<u32>,
    pub owner: Owner,
}

/// One checked recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The file it came from.
    pub file: PathBuf,
    pub name: String,
    pub tag: String,
    pub from: From,
    /// Runtime packages, name -> exact version.
    pub packages: BTreeMap<String, String>,
    pub config: Config,
    pub files: Vec<FileAdd>,
    pub build: Option<BuildStage>,
    pub copies: Vec<Copy>,
    /// `SOURCE_DATE_EPOCH` from the recipe, if set.
    pub source_date_epoch: Option<i64>,
    /// The configure step's settings (see [`crate::configure`]).
    pub configure: ConfigureSettings,
    /// `[image] essential = true`: the image ships Debian's Essential set
    /// and usr-is-merged (what its packages may use without declaring it:
    /// `/bin/sh`, coreutils, sed...), as `debian:bookworm-slim` does. In
    /// the base, every image has them; in an image, that image only.
    pub essential: bool,
}

/// How a recipe's packages are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigureSettings {
    /// `[image] configure` (default true): run maintainer scripts.
    pub enabled: bool,
    /// `[configure] toolset` (base only): packages present while
    /// configuring that never ship, name -> exact version; added to the
    /// Essential set, or the whole toolset with `essential = false`.
    pub toolset: BTreeMap<String, String>,
    /// `[configure] essential` (base only, default true): the toolset holds
    /// every `Essential: yes` package of the sources and usr-is-merged.
    pub essential: bool,
    /// `[debconf]`: question -> answer.
    pub debconf: BTreeMap<String, String>,
}

impl Default for ConfigureSettings {
    fn default() -> Self {
        ConfigureSettings {
            enabled: true,
            toolset: BTreeMap::new(),
            essential: true,
            debconf: BTreeMap::new(),
        }
    }
}

impl Recipe {
    /// `name:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// The whole recipe tree: one base and the images on it.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The recipes directory.
    pub dir: PathBuf,
    pub base: Recipe,
    /// Sorted by name.
    pub images: Vec<Recipe>,
    pub source: Source,
}

impl Tree {
    /// The lock file path for this tree.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("imgforge.lock")
    }
    /// `SOURCE_DATE_EPOCH` declared by the base recipe.
    pub fn source_date_epoch(&self) -> Option<i64> {
        self.base.source_date_epoch
    }
}

/// Options for [`load_tree`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The recipes directory (`recipes/`).
    pub recipes: PathBuf,
    /// The base recipe; default `<recipes>/../base/base.toml`.
    pub base: Option<PathBuf>,
}

impl LoadOptions {
    /// The recipe tree a command names.
    pub fn new(opts: &crate::options::CommonOptions) -> LoadOptions {
        LoadOptions {
            recipes: opts.recipes.clone(),
            base: opts.base.clone(),
        }
    }
}

/// Read and check the base recipe and every `*.toml` in the recipes directory.
pub fn load_tree(opts: &LoadOptions) -> Result<Tree, RecipeErrors> {
    let dir = opts.recipes.clone();
    let base_path = opts
        .base
        .clone()
        .unwrap_or_else(|| dir.join("..").join("base").join("base.toml"));
    let mut diags = Vec::new();

    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect(),
        Err(e) => {
            return Err(RecipeErrors(vec![Diagnostic {
                file: dir.clone(),
                line: 1,
                column: 1,
                message: format!("cannot read the recipes directory: {e}"),
                help:
                    "pass the directory holding your *.toml recipes, e.g. `imgforge check recipes/`"
                        .into(),
            }]));
        }
    };
    files.sort();

    let base = parse_file(&base_path, true, &mut diags);
    let mut images = Vec::new();
    for f in &files {
        if let Some(r) = parse_file(f, false, &mut diags) {
            images.push(r);
        }
    }
    let (base, source) = match base {
        Some(b) => b,
        None => {
            if diags.is_empty() {
                unreachable!("parse_file returns None only with a diagnostic");
            }
            return Err(RecipeErrors(diags));
        }
    };
    let mut images: Vec<Recipe> = images.into_iter().map(|(r, _)| r).collect();
    images.sort_by(|a, b| a.name.cmp(&b.name).then(a.tag.cmp(&b.tag)));
    // Duplicate image names.
    for w in images.windows(2) {
        if w[0].name == w[1].name {
            diags.push(Diagnostic {
                file: w[1].file.clone(),
                line: 1,
                column: 1,
                message: format!(
                    "image name {:?} is also used by {}",
                    w[1].name,
                    w[0].file.display()
                ),
                help: "give every recipe its own image name".into(),
            });
        }
    }
    for img in &images {
        if img.name == base.name {
            diags.push(Diagnostic {
                file: img.file.clone(),
                line: 1,
                column: 1,
                message: format!("image name {:?} is the base image's name", img.name),
                help: "choose another name".into(),
            });
        }
    }
    if diags.is_empty() {
        Ok(Tree {
            dir,
            base,
            images,
            source,
        })
    } else {
        diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(RecipeErrors(diags))
    }
}

fn archive_source(
    a: &RawArchive,
    dir: &Path,
    file: &Path,
) -> crate::archive::sources::ArchiveSource {
    crate::archive::sources::ArchiveSource {
        uri: a.uri.trim_end_matches('/').to_string(),
        suites: a.suites.clone(),
        components: a.components.clone(),
        keys: crate::archive::sources::Keys::Files(a.keyring.iter().map(|k| dir.join(k)).collect()),
        trusted: a.trusted,
        declared: format!("{} [[source.archive]] {}", file.display(), a.uri),
    }
}

/// The Debian architecture of an OCI platform (`linux/arm64` -> `arm64`).
pub fn platform_arch(platform: &str) -> Option<&'static str> {
    Some(match platform {
        "linux/amd64" => "amd64",
        "linux/arm64" | "linux/arm64/v8" => "arm64",
        "linux/arm/v7" => "armhf",
        "linux/arm/v5" => "armel",
        "linux/386" => "i386",
        "linux/ppc64le" => "ppc64el",
        "linux/s390x" => "s390x",
        "linux/riscv64" => "riscv64",
        "linux/mips64le" => "mips64el",
        _ => return None,
    })
}

/// `[source]`'s architecture: `platforms` (one, for now) or `arch`, which
/// must then agree; `amd64` when neither is given.
fn source_arch(s: &RawSource, s_span: &std::ops::Range<usize>, cx: &mut Ctx) -> String {
    let arch = s.arch.clone().unwrap_or_else(default_arch);
    let Some(p) = &s.platforms else {
        return arch;
    };
    let span = p.span();
    match p.get_ref().as_slice() {
        [one] => match platform_arch(one) {
            Some(a) if s.arch.as_deref().is_none_or(|x| x == a) => a.to_string(),
            Some(a) => {
                cx.at(
                    span,
                    format!("platforms = [{one:?}] is {a}, but arch = {arch:?}"),
                    "remove `arch`: `platforms` says it",
                );
                arch
            }
            None => {
                cx.at(
                    span,
                    format!("unknown platform {one:?}"),
                    "name it as OCI does: \"linux/amd64\", \"linux/arm64\", \"linux/arm/v7\", \"linux/386\", \"linux/ppc64le\", \"linux/s390x\", \"linux/riscv64\"",
                );
                arch
            }
        },
        v => {
            cx.at(
                if v.is_empty() { s_span.clone() } else { span },
                format!("platforms: {} listed; one tree builds one platform for now", v.len()),
                "list exactly one (e.g. platforms = [\"linux/arm64\"]); build each other platform from a copy of the tree with its own base recipe",
            );
            arch
        }
    }
}

/// 1-based line and column of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(pos, |i| pos - i - 1) + 1;
    (line, col)
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, message: String, help: &str) {
        let (line, column) = line_col(self.text, span.start);
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            help: help.to_string(),
        });
    }
}

fn parse_file(path: &Path, is_base: bool, diags: &mut Vec<Diagnostic>) -> Option<(Recipe, Source)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read recipe: {e}"),
                help: if is_base {
                    "the base recipe lives in base/base.toml beside recipes/; pass --base FILE to use another".into()
                } else {
                    "check the file is readable".into()
                },
            });
            return None;
        }
    };
    parse_text(path, &text, is_base, diags)
}

/// `[build] timeout` and `memory`, or their defaults.
fn build_limits(cx: &mut Ctx, text: &str, b: &RawBuild) -> crate::limits::StepLimits {
    let mut l = crate::limits::StepLimits::default();
    let mut at = |key: &str, reason: String, help: &'static str| {
        let pos = text.find(&format!("{key} =")).unwrap_or(0);
        cx.at(pos..pos, reason, help);
    };
    if let Some(t) = &b.timeout {
        match crate::limits::parse_duration(t) {
            Ok(d) => l.timeout = d,
            Err(e) => at(
                "timeout",
                e,
                "a step time limit is like \"90s\", \"30m\" or \"2h\"",
            ),
        }
    }
    if let Some(m) = &b.memory {
        match crate::limits::parse_bytes(m) {
            Ok(n) => l.memory_bytes = n,
            Err(e) => at(
                "memory",
                e,
                "a step memory limit is like \"512M\" or \"4G\"",
            ),
        }
    }
    l
}

/// Check recipe text as if read from `path` (the fuzzing entry point):
/// the diagnostics a `check` would print for it.
pub fn check_text(path: &Path, text: &str, is_base: bool) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    parse_text(path, text, is_base, &mut diags);
    diags
}

fn parse_text(
    path: &Path,
    text: &str,
    is_base: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Recipe, Source)> {
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            diags.push(Diagnostic {
                file: path.to_path_buf(),
                line,
                column,
                message: format!("invalid recipe: {}", e.message().trim()),
                help: "see docs/recipes.md for the fields a recipe may have".into(),
            });
            return None;
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut cx = Ctx {
        file: path,
        text,
        diags,
    };

    // image
    let name = raw.image.name.get_ref().clone();
    if !valid_name(&name) {
        cx.at(
            raw.image.name.span(),
            format!("invalid image name {name:?}"),
            "use lowercase letters, digits, '.', '_', '-' and '/' separators",
        );
    }
    let tag = raw.image.tag.get_ref().clone();
    if !valid_tag(&tag) {
        cx.at(
            raw.image.tag.span(),
            format!("invalid tag {tag:?}"),
            "a tag is 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
        );
    } else if tag == "latest" {
        cx.at(
            raw.image.tag.span(),
            "the tag \"latest\" says nothing about what the image holds".into(),
            "tag images with a version, e.g. tag = \"1.22.1\"",
        );
    }
    let from = check_from(&mut cx, &raw.image, is_base, dir);
    if let Some(sde) = &raw.image.source_date_epoch {
        if !is_base {
            cx.at(
                sde.span(),
                "source-date-epoch may only be set in the base recipe".into(),
                "move it to base/base.toml so every image shares one timestamp",
            );
        } else if *sde.get_ref() < 0 {
            cx.at(
                sde.span(),
                "source-date-epoch must not be negative".into(),
                "use seconds since 1970-01-01 UTC, e.g. the date of your last release",
            );
        }
    }

    // source
    let mut source = Source::default();
    if let Some(s) = &raw.source {
        if !is_base {
            cx.at(
                s.span(),
                "[source] may only appear in the base recipe".into(),
                "every image resolves from the base's package source; move [source] to base/base.toml",
            );
        } else {
            let s_span = s.span();
            let s = s.get_ref();
            source = Source {
                mirror: s.mirror.as_ref().map(|m| dir.join(m)),
                apt: s.apt,
                arch: source_arch(s, &s_span, &mut cx),
                distro: s.distro.clone(),
                archives: s
                    .archive
                    .iter()
                    .map(|a| archive_source(a, dir, path))
                    .collect(),
                snapshot: s
                    .snapshot
                    .as_ref()
                    .map(|n| crate::archive::sources::Snapshot {
                        timestamp: n.timestamp.clone(),
                        url: n.url.clone(),
                    }),
                cache: CacheTable::default(),
            };
            for a in &source.archives {
                if !a.trusted && a.keys == crate::archive::sources::Keys::Files(Vec::new()) {
                    cx.at(
                        s_span.clone(),
                        format!("[[source.archive]] {} has no keyring", a.uri),
                        "set keyring = \"path/to/keyring.gpg\" (relative to this file), or trusted = true to accept it unsigned",
                    );
                }
            }
        }
    }

    source.cache = check_cache(&mut cx, raw.cache.as_ref(), is_base);
    let packages = check_packages(&mut cx, &raw.packages, "packages");
    let essential = raw.image.essential.unwrap_or(false);
    let mut configure = ConfigureSettings {
        enabled: raw.image.configure.unwrap_or(true),
        toolset: BTreeMap::new(),
        essential: true,
        debconf: raw.debconf.clone(),
    };
    if let Some(c) = &raw.configure {
        if !is_base {
            cx.at(
                c.span(),
                "[configure] may only appear in the base recipe".into(),
                "the toolset is shared by every image; move [configure] to base/base.toml",
            );
        } else {
            configure.toolset = check_packages(&mut cx, &c.get_ref().toolset, "configure.toolset");
            configure.essential = c.get_ref().essential.unwrap_or(true);
        }
    }

    // config
    let mut expose = Vec::new();
    for p in &raw.config.expose {
        match normalize_port(p.get_ref()) {
            Some(n) => expose.push(n),
            None => cx.at(
                p.span(),
                format!("invalid exposed port {:?}", p.get_ref()),
                "write a port as \"80\", \"80/tcp\" or \"53/udp\"",
            ),
        }
    }
    expose.sort();
    expose.dedup();
    let config = Config {
        entrypoint: raw.config.entrypoint.clone(),
        cmd: raw.config.cmd.clone(),
        env: raw.config.env.clone(),
        workdir: raw.config.workdir.clone(),
        user: raw.config.user.clone(),
        expose,
        labels: raw.config.labels.clone(),
        stop_signal: raw.config.stop_signal.clone(),
    };

    // files
    let mut files = Vec::new();
    for f in &raw.files {
        let span = f.span();
        let f = f.get_ref();
        let dest = check_image_path(&mut cx, span.clone(), &f.dest, "dest");
        let mode = check_mode(&mut cx, span.clone(), f.mode.as_deref());
        let owner = check_owner(&mut cx, span.clone(), f.owner.as_deref());
        let src = dir.join(&f.src);
        if Path::new(&f.src).is_absolute() || f.src.split('/').any(|c| c == "..") {
            cx.at(
                span,
                format!("file source {:?} leaves the recipe directory", f.src),
                "name a file under the recipe's directory with a relative path",
            );
        } else if !src.is_file() {
            cx.at(
                span,
                format!("file source {:?} does not exist", f.src),
                "paths are relative to the recipe file's directory",
            );
        } else if let Some(dest) = dest {
            files.push(FileAdd {
                src,
                dest,
                mode,
                owner,
            });
        }
    }

    // build stage
    let build = raw.build.as_ref().map(|b| {
        if is_base {
            // Reported once below.
        }
        let packages = check_packages(&mut cx, &b.packages, "build.packages");
        let context = b.context.as_ref().map(|c| dir.join(c));
        if let Some(c) = &context
            && !c.is_dir()
        {
            let pos = text.find("context").unwrap_or(0);
            cx.at(
                pos..pos,
                format!("build context {} is not a directory", c.display()),
                "the context path is relative to the recipe file's directory",
            );
        }
        let steps = b
            .steps
            .iter()
            .map(|s| match s.get_ref() {
                RawStep::Shell(x) => Step::Shell(x.clone()),
                RawStep::Exec(v) => Step::Exec(v.clone()),
            })
            .collect::<Vec<_>>();
        for s in &b.steps {
            if let RawStep::Exec(v) = s.get_ref()
                && v.is_empty()
            {
                cx.at(
                    s.span(),
                    "empty build step".into(),
                    "a step is a shell string or a non-empty argv array",
                );
            }
        }
        if b.artifacts.is_empty() {
            let pos = text.find("[build]").unwrap_or(0);
            cx.at(
                pos..pos,
                "a build stage must declare its artifacts".into(),
                "list what the stage produces, e.g. artifacts = [\"/out/hello\"]",
            );
        }
        for a in &b.artifacts {
            if !a.starts_with('/') || a.split('/').any(|c| c == "..") {
                let pos = text.find(a.as_str()).unwrap_or(0);
                cx.at(
                    pos..pos,
                    format!("artifact {a:?} must be an absolute path without '..'"),
                    "artifacts are paths in the build root, e.g. \"/out/hello\"",
                );
            }
        }
        let limits = build_limits(&mut cx, text, b);
        BuildStage {
            packages,
            context,
            steps,
            artifacts: b.artifacts.clone(),
            env: b.env.clone(),
            limits,
        }
    });
    if is_base && build.is_some() {
        cx.at(
            0..0,
            "the base recipe cannot have a build stage".into(),
            "put build stages in the recipes that need them",
        );
    }

    let mut copies = Vec::new();
    for c in &raw.copy {
        let span = c.span();
        let c = c.get_ref();
        if build.is_none() {
            cx.at(
                span.clone(),
                "[[copy]] needs a [build] stage to copy from".into(),
                "add a [build] section declaring the artifact, or use [[files]] for files in the recipe directory",
            );
        }
        let mode = check_mode(&mut cx, span.clone(), c.mode.as_deref());
        let owner = check_owner(&mut cx, span.clone(), c.owner.as_deref());
        if !c.from.starts_with('/') || c.from.split('/').any(|x| x == "..") {
            cx.at(
                span.clone(),
                format!(
                    "copy source {:?} must be an absolute build-root path",
                    c.from
                ),
                "name one of the build stage's artifacts, e.g. from = \"/out/hello\"",
            );
        }
        if check_image_path(&mut cx, span, &c.to, "to").is_some() {
            copies.push(Copy {
                from: c.from.clone(),
                to: c.to.clone(),
                mode,
                owner,
            });
        }
    }

    Some((
        Recipe {
            file: path.to_path_buf(),
            name,
            tag,
            from,
            packages,
            config,
            files,
            build,
            copies,
            source_date_epoch: raw.image.source_date_epoch.map(|s| s.into_inner()),
            configure,
            essential,
        },
        source,
    ))
}

/// `[cache]`: base only, each value a `REGISTRY/REPO`.
fn check_cache(cx: &mut Ctx<'_>, raw: Option<&Spanned<RawCache>>, is_base: bool) -> CacheTable {
    let Some(c) = raw else {
        return CacheTable::default();
    };
    if !is_base {
        cx.at(
            c.span(),
            "[cache] may only appear in the base recipe".into(),
            "every image of a tree shares one step cache; move [cache] to base/base.toml",
        );
        return CacheTable::default();
    }
    let mut check = |v: &Option<Spanned<String>>, field: &str| {
        let v = v.as_ref()?;
        match crate::options::check_cache_ref(v.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                cx.at(
                    v.span(),
                    format!("invalid cache.{field}: {e}"),
                    "name a repository of an OCI registry, e.g. from = \"127.0.0.1:5000/team/imgforge-cache\" (credentials come from the docker config)",
                );
                None
            }
        }
    };
    CacheTable {
        from: check(&c.get_ref().from, "from"),
        to: check(&c.get_ref().to, "to"),
    }
}

fn check_from(cx: &mut Ctx<'_>, img: &RawImage, is_base: bool, dir: &Path) -> From {
    let Some(from) = &img.from else {
        if is_base {
            let pos = cx.text.find("[image]").unwrap_or(0);
            cx.at(
                pos..pos,
                "the base recipe must say what it starts from".into(),
                "write from = \"scratch\" or from = \"name@sha256:<64 hex digits>\" with from-layout",
            );
            return From::Scratch;
        }
        return From::Base;
    };
    let s = from.get_ref().as_str();
    let layout = img.from_layout.as_ref().map(|l| dir.join(l.get_ref()));
    if s == "scratch" {
        if !is_base {
            cx.at(
                from.span(),
                "only the base recipe may start from scratch".into(),
                "remove `from` to build on the common base",
            );
        }
        return From::Scratch;
    }
    if s == BASE_REF {
        if is_base {
            cx.at(
                from.span(),
                "the base cannot start from itself".into(),
                "write from = \"scratch\"",
            );
        }
        return From::Base;
    }
    match s.split_once('@') {
        Some((name, digest)) if !name.is_empty() => match digest.strip_prefix("sha256:") {
            Some(hex) if crate::digest::is_sha256_hex(hex) => {
                if layout.is_none() {
                    cx.at(
                            from.span(),
                            format!("{s} is pinned, but imgforge needs a local copy of it"),
                            "add from-layout = \"path/to/oci-layout\" (imgforge never pulls from a registry)",
                        );
                }
                From::Pinned {
                    reference: s.to_string(),
                    digest: digest.to_string(),
                    layout,
                }
            }
            _ => {
                cx.at(
                    from.span(),
                    format!("from {s:?} has a malformed digest"),
                    "a digest is sha256: followed by 64 lowercase hex digits",
                );
                From::Base
            }
        },
        _ => {
            let why = if s.ends_with(":latest") || !s.contains(':') {
                "a tag (or `latest`) can point at different images on different days"
            } else {
                "a tag can be moved to another image at any time"
            };
            cx.at(
                from.span(),
                format!("from {s:?} is not pinned by digest: {why}"),
                "pin it as name@sha256:<digest> (see `skopeo inspect`), or remove `from` to build on the common base",
            );
            From::Base
        }
    }
}

fn check_packages(
    cx: &mut Ctx<'_>,
    raw: &BTreeMap<String, Spanned<toml::Value>>,
    table: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, v) in raw {
        let span = v.span();
        if !valid_package_name(name) {
            cx.at(
                span.clone(),
                format!("{table}: {name:?} is not a valid Debian package name"),
                "package names are lowercase letters, digits, '+', '-' and '.'",
            );
            continue;
        }
        if name == "usrmerge" {
            cx.at(
                span.clone(),
                format!("{table}: usrmerge converts a split-/usr system, and imgforge's roots are merged-/usr from the start"),
                "remove it: usr-is-merged (in the configure toolset by default) marks the root as merged",
            );
            continue;
        }
        let Some(ver) = v.get_ref().as_str() else {
            if v.get_ref().is_table() {
                cx.at(
                    span,
                    format!("{table}: {name:?} is a table, not a package: TOML reads dots in bare keys as nesting"),
                    &format!("quote package names that contain dots, e.g. \"{name}.x\" = \"1.0-1\""),
                );
                continue;
            }
            cx.at(
                span,
                format!("{table}: version of {name} must be a string"),
                &format!("pin an exact version in quotes, e.g. {name} = \"1.2.3-1\""),
            );
            continue;
        };
        let problem = if ver.trim().is_empty() {
            Some("has no version".to_string())
        } else if ver == "*" || ver.eq_ignore_ascii_case("latest") || ver == "any" {
            Some(format!("is not pinned ({ver:?} means any version)"))
        } else if ver.starts_with(['<', '>', '=', '~', '^'])
            || ver.contains(' ')
            || ver.contains(',')
            || ver.contains('*')
        {
            Some(format!(
                "has a version range {ver:?}, not one exact version"
            ))
        } else if ver.parse::<debversion::Version>().is_err()
            || !ver.starts_with(|c: char| c.is_ascii_digit()) && !ver.contains(':')
        {
            Some(format!("has an invalid Debian version {ver:?}"))
        } else {
            None
        };
        match problem {
            Some(p) => cx.at(
                span,
                format!("{table}: package {name} {p}"),
                &format!(
                    "pin one exact version, e.g. {name} = \"<version>\"; `apt-cache policy {name}` or the mirror's Packages index lists them"
                ),
            ),
            None => {
                out.insert(name.clone(), ver.to_string());
            }
        }
    }
    out
}

fn check_image_path(
    cx: &mut Ctx<'_>,
    span: std::ops::Range<usize>,
    p: &str,
    field: &str,
) -> Option<String> {
    if !p.starts_with('/') {
        cx.at(
            span,
            format!("{field} {p:?} must be an absolute path in the image"),
            "write it as /usr/local/bin/name",
        );
        return None;
    }
    if p.split('/').any(|c| c == ".." || c == ".") || p.contains('\0') {
        cx.at(
            span,
            format!("{field} {p:?} contains '.' or '..' components"),
            "write a plain absolute path",
        );
        return None;
    }
    let trimmed = p.trim_start_matches('/');
    if trimmed.is_empty() {
        cx.at(
            span,
            format!("{field} cannot be the root"),
            "name a file path",
        );
        return None;
    }
    Some(trimmed.to_string())
}

fn check_mode(cx: &mut Ctx<'_>, span: std::ops::Range<usize>, m: Option<&str>) -> Option<u32> {
    let m = m?;
    match u32::from_str_radix(m, 8) {
        Ok(v) if v <= 0o7777 => Some(v),
        _ => {
            cx.at(
                span,
                format!("invalid mode {m:?}"),
                "write the mode as an octal string, e.g. mode = \"0755\"",
            );
            None
        }
    }
}

fn check_owner(cx: &mut Ctx<'_>, span: std::ops::Range<usize>, o: Option<&str>) -> Owner {
    let Some(o) = o else {
        return Owner::default();
    };
    let parsed = match o.split_once(':') {
        Some((u, g)) => u.parse().ok().zip(g.parse().ok()),
        None => o.parse().ok().map(|u| (u, u)),
    };
    match parsed {
        Some((uid, gid)) => Owner { uid, gid },
        None => {
            cx.at(
                span,
                format!("invalid owner {o:?}"),
                "owners are numeric, \"uid:gid\" (names need an /etc/passwd the image may not have)",
            );
            Owner::default()
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        })
}

fn valid_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !s.starts_with(['.', '-'])
}

/// Debian package names: `[a-z0-9][a-z0-9+.-]+`.
pub fn valid_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

fn normalize_port(p: &str) -> Option<String> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let n: u16 = port.parse().ok()?;
    if n == 0 || !matches!(proto, "tcp" | "udp" | "sctp") {
        return None;
    }
    Some(format!("{n}/{proto}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
    }

    const BASE: &str = "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\n";

    #[test]
    fn the_cache_table_is_read_in_the_base_and_refused_elsewhere() {
        let p = Path::new("base.toml");
        let good =
            format!("{BASE}\n[cache]\nfrom = \"127.0.0.1:5000/c\"\nto = \"127.0.0.1:5000/d\"\n");
        let mut diags = Vec::new();
        let (_, source) = parse_text(p, &good, true, &mut diags).unwrap();
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(source.cache.from.as_deref(), Some("127.0.0.1:5000/c"));
        assert_eq!(source.cache.to.as_deref(), Some("127.0.0.1:5000/d"));
        let bad = format!("{BASE}\n[cache]\nfrom = \"https://x/c\"\n");
        let d = check_text(p, &bad, true);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].line, d[0].message.contains("cache.from")),
            (7, true),
            "{d:?}"
        );
        let d = check_text(Path::new("app.toml"), &good, false);
        assert!(
            d.iter()
                .any(|d| d.line >= 6 && d.message.contains("only appear in the base")),
            "{d:?}"
        );
    }
}
