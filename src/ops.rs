//! The commands: `check`, `lock`, `build`, `verify`, each a function taking
//! an options struct. `main.rs` calls these and maps errors to exit codes.
//!
//! `build` runs the whole pipeline into a staging directory beside `--out`
//! and renames it into place at the end: a failed or interrupted build
//! leaves the previous output untouched.

use crate::layer::{self, Compression, Entry, LayerBlob};
use crate::recipe::{self, Config, Recipe, Tree};
use crate::resolve::{self, Lock, LockedPackage, SourceOptions, index::Index};
use crate::{configure, image, sandbox, sbom};
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod gc;
pub mod update;
pub mod vendor;

/// Options shared by every command.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    pub recipes: PathBuf,
    pub base: Option<PathBuf>,
    pub mirror: Option<PathBuf>,
    pub apt: bool,
    pub cache: Option<PathBuf>,
}

/// Options of `build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub common: CommonOptions,
    pub out: PathBuf,
    pub bundle: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub compression: Compression,
    pub locked: bool,
    pub use_cache: bool,
    pub quiet: bool,
    /// Build a zstd `--bundle` although old Docker cannot load it.
    pub force: bool,
    /// Write the build metadata (JSON) here.
    pub metadata_file: Option<PathBuf>,
    /// Print the build metadata as JSON on stdout.
    pub json: bool,
    /// Overrides the environment and the recipes.
    pub source_date_epoch: Option<i64>,
    /// Most `data.tar` entries accepted per package (memory bound).
    pub max_package_entries: u64,
}

impl BuildOptions {
    /// Limits applied to every package read by a build.
    fn deb_limits(&self) -> crate::deb::Limits {
        crate::deb::Limits {
            entries: self.max_package_entries,
            ..Default::default()
        }
    }
}

/// Options of `verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub build: BuildOptions,
    pub against: Option<PathBuf>,
    pub json: bool,
}

/// Status lines on stderr (cargo style), unless quiet.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub quiet: bool,
}

impl Status {
    pub fn say(&self, verb: &str, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{verb:>12} {msg}");
        }
    }
}

/// Render an error chain with its `help:` lines for the terminal.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut s = format!("error: {e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!("\n  caused by: {c}"));
        }
    }
    s.replace("error: error: ", "error: ")
}

pub(crate) fn load_tree(opts: &CommonOptions) -> Result<Tree> {
    Ok(recipe::load_tree(&recipe::LoadOptions {
        recipes: opts.recipes.clone(),
        base: opts.base.clone(),
    })?)
}

/// The default cache directory.
pub fn cache_dir(opts: &CommonOptions) -> PathBuf {
    if let Some(c) = &opts.cache {
        return c.clone();
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("imgforge");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("imgforge"),
        None => std::env::temp_dir().join("imgforge-cache"),
    }
}

/// Where packages come from; `refresh` downloads Release and indexes again.
pub fn source_options(opts: &CommonOptions, refresh: bool) -> SourceOptions {
    SourceOptions {
        mirror: opts.mirror.clone(),
        apt: opts.apt,
        apt_root: PathBuf::from("/"),
        cache_dir: cache_dir(opts),
        refresh,
    }
}

/// `imgforge check`: the pinning policy for every recipe, then (when a
/// package source exists) resolution of every image. Writes nothing.
pub fn check(opts: &CommonOptions, quiet: bool) -> Result<()> {
    let st = Status { quiet };
    let t0 = Instant::now();
    let tree = load_tree(opts)?;
    st.say(
        "Checked",
        format!(
            "{} recipe(s) and the base: every input is pinned",
            tree.images.len()
        ),
    );
    let index = match resolve::load_index(&tree, &source_options(opts, false)) {
        Ok(i) => i,
        Err(resolve::ResolveError::NoSource(why)) => {
            st.say(
                "Skipped",
                format!("resolution: no package source ({why}); pass --mirror DIR to check it"),
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    for bad in &index.bad {
        eprintln!(
            "warning: {bad}\n  help: builds that select this package fail; fix or remove the stanza in the mirror's index"
        );
    }
    if let Ok(locked) = Lock::read(&tree.lock_path()) {
        let cache = cache_dir(opts);
        resolve::drift::report(
            &resolve::drift::locked(&locked, &index, &cache),
            "locked",
            &tree.dir,
        )?;
    }
    let lock = resolve::resolve_tree(&tree, &index)?;
    for img in &lock.images {
        st.say(
            "Resolved",
            format!(
                "{} ({}): {} packages",
                img.name,
                img.stage,
                img.packages.len()
            ),
        );
    }
    st.say(
        "Finished",
        format!("check in {:.2}s", t0.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// Write a file atomically (temp file beside it, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".imgforge-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    use std::io::Write;
    tmp.write_all(bytes)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Resolve, compare with the lock file, and write it when allowed.
pub(crate) fn lock_tree(tree: &Tree, index: &Index, locked: bool, st: Status) -> Result<Lock> {
    let path = tree.lock_path();
    let fresh = resolve::resolve_tree(tree, index)?;
    let text = fresh.to_text();
    let old_text = std::fs::read_to_string(&path).ok();
    if old_text.as_deref() == Some(text.as_str()) {
        st.say("Unchanged", path.display());
        return Ok(fresh);
    }
    if locked {
        let changes = match &old_text {
            None => "  (no lock file)".to_string(),
            Some(_) => match Lock::read(&path) {
                Ok(old) => fresh.diff(&old).join("\n"),
                Err(e) => format!("  {e}"),
            },
        };
        return Err(resolve::ResolveError::Stale { path, changes }.into());
    }
    write_atomic(&path, text.as_bytes())?;
    st.say("Locked", path.display());
    Ok(fresh)
}

/// `imgforge lock --explain PACKAGE`: why `package` is in each image.
pub fn explain(lock: &Lock, package: &str) -> Result<String> {
    resolve::why::explain_lock(lock, package).ok_or_else(|| {
        resolve::ResolveError::NotInLock {
            package: package.to_string(),
        }
        .into()
    })
}

/// `imgforge lock`.
pub fn lock(opts: &CommonOptions, locked: bool, quiet: bool) -> Result<Lock> {
    let st = Status { quiet };
    let tree = load_tree(opts)?;
    let index = resolve::load_index(&tree, &source_options(opts, true))?;
    let lock = lock_tree(&tree, &index, locked, st)?;
    for img in &lock.images {
        st.say(
            "Resolved",
            format!(
                "{} ({}): {} packages",
                img.name,
                img.stage,
                img.packages.len()
            ),
        );
    }
    Ok(lock)
}

/// The lock a build uses: the file when it matches the recipes, else a
/// fresh resolution (written unless `--locked`).
pub(crate) fn lock_for_build(tree: &Tree, index: &Index, locked: bool, st: Status) -> Result<Lock> {
    let path = tree.lock_path();
    if path.is_file() {
        let lock = Lock::read(&path)?;
        let stale = resolve::stale_entries(tree, &lock);
        if stale.is_empty() && lock.arch == tree.source.arch {
            return Ok(lock);
        }
        if locked {
            return Err(resolve::ResolveError::Stale {
                path,
                changes: stale.join("\n"),
            }
            .into());
        }
    } else if locked {
        return Err(resolve::ResolveError::NoLock {
            path,
            dir: tree.dir.display().to_string(),
        }
        .into());
    }
    lock_tree(tree, index, false, st)
}

/// `SOURCE_DATE_EPOCH`: options, then environment, then the base recipe.
fn source_date_epoch(opts: &BuildOptions, tree: &Tree) -> Result<i64> {
    if let Some(s) = opts.source_date_epoch {
        return Ok(s);
    }
    if let Ok(s) = std::env::var("SOURCE_DATE_EPOCH") {
        return s.trim().parse::<i64>().ok().filter(|v| *v >= 0).with_context(|| {
            format!("SOURCE_DATE_EPOCH={s:?} is not a non-negative integer\nhelp: set it to seconds since 1970-01-01 UTC, or unset it to use the base recipe's source-date-epoch")
        });
    }
    tree.source_date_epoch().context(
        "no SOURCE_DATE_EPOCH: imgforge never reads the clock\nhelp: set source-date-epoch in base/base.toml's [image] section, or export SOURCE_DATE_EPOCH",
    )
}

/// Merge a recipe's config over the base's.
fn merge_config(base: &Config, img: &Config) -> Config {
    let mut c = base.clone();
    c.env.extend(img.env.clone());
    c.labels.extend(img.labels.clone());
    if img.entrypoint.is_some() {
        c.entrypoint = img.entrypoint.clone();
        c.cmd = None;
    }
    if img.cmd.is_some() {
        c.cmd = img.cmd.clone();
    }
    if img.workdir.is_some() {
        c.workdir = img.workdir.clone();
    }
    if img.user.is_some() {
        c.user = img.user.clone();
    }
    if img.stop_signal.is_some() {
        c.stop_signal = img.stop_signal.clone();
    }
    c.expose.extend(img.expose.clone());
    c.expose.sort();
    c.expose.dedup();
    c
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    pub images: Vec<image::WrittenImage>,
    pub out: PathBuf,
    /// Bytes of layer tar produced (uncompressed).
    pub layer_bytes: u64,
    /// Build stages served from the cache.
    pub cached_stages: usize,
    /// Build stages run.
    pub run_stages: usize,
}

/// A fetched, read package.
struct Pkg {
    locked: LockedPackage,
    deb: PathBuf,
    control: crate::deb::ControlInfo,
}

/// `imgforge build`.
pub fn build(opts: &BuildOptions) -> Result<BuildSummary> {
    let st = Status { quiet: opts.quiet };
    let t0 = Instant::now();
    image::compat::check_bundle(opts.compression, opts.bundle.is_some(), opts.force)?;
    let tree = load_tree(&opts.common)?;
    let src = source_options(&opts.common, false);
    let index = resolve::load_index(&tree, &src)?;
    let lock = lock_for_build(&tree, &index, opts.locked, st)?;
    let drifted = resolve::drift::locked(&lock, &index, &src.cache_dir);
    resolve::drift::report(&drifted, "locked", &tree.dir)?;
    let sde = source_date_epoch(opts, &tree)?;
    let jobs = opts
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .context("cannot start worker threads")?;
    let summary = pool.install(|| build_locked(opts, &tree, &index, &src, &lock, sde, jobs, st))?;
    let meta = crate::json::to_canonical_pretty(&crate::metadata::document(&summary.images));
    if let Some(f) = &opts.metadata_file {
        if let Some(p) = f.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        write_atomic(f, &meta)?;
        st.say("Metadata", f.display());
    }
    if opts.json {
        use std::io::Write;
        std::io::stdout().write_all(&meta)?;
    }
    st.say(
        "Finished",
        format!(
            "{} image(s) in {:.1}s -> {}",
            summary.images.len(),
            t0.elapsed().as_secs_f64(),
            summary.out.display()
        ),
    );
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn build_locked(
    opts: &BuildOptions,
    tree: &Tree,
    index: &Index,
    src: &SourceOptions,
    lock: &Lock,
    sde: i64,
    jobs: usize,
    st: Status,
) -> Result<BuildSummary> {
    let sde_u = sde as u64;
    // 1. Fetch and read every package of the lock.
    let mut wanted: BTreeMap<(String, String), LockedPackage> = BTreeMap::new();
    for img in &lock.images {
        for p in &img.packages {
            wanted
                .entry((p.name.clone(), p.version.clone()))
                .or_insert_with(|| p.clone());
        }
    }
    st.say(
        "Fetching",
        format!("{} packages (sha256-checked)", wanted.len()),
    );
    let pkgs: Vec<Pkg> = wanted
        .into_values()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|p| -> Result<Pkg> {
            let deb = resolve::fetch(&p, index, src)?;
            let control = crate::deb::read_control(&deb, &opts.deb_limits())?;
            crate::deb::check_identity(&deb, &control, &p.identity())?;
            Ok(Pkg {
                locked: p,
                deb,
                control,
            })
        })
        .collect::<Result<_>>()?;
    let pkg_by_key: BTreeMap<(String, String), &Pkg> = pkgs
        .iter()
        .map(|p| ((p.locked.name.clone(), p.locked.version.clone()), p))
        .collect();
    let release = debian_release(lock, &tree.base.name, &pkg_by_key)?;
    if let Some(r) = &release {
        crate::release::check_tag(&tree.base.file, &tree.base.tag, r)?;
    }

    // 2. Staging area beside --out.
    let out = &opts.out;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    if out.exists() && !out.join("oci-layout").is_file() && !is_empty_dir(out) {
        bail!(
            "{} exists and is not an imgforge output (no oci-layout file)\nhelp: choose another --out, or remove it yourself",
            out.display()
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(".imgforge-build-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".imgforge-scratch-")
        .tempdir_in(&parent)?;
    let layout = staging.path();
    let blobs = layout.join("blobs").join("sha256");
    let scratch_blobs = scratch.path().join("blobs");
    let spool = scratch.path().join("spool");
    for d in [&blobs, &scratch_blobs, &spool] {
        std::fs::create_dir_all(d)?;
    }

    // 3. Package entries, in parallel.
    let popts = layer::package::PackageOptions {
        source_date_epoch: sde_u,
        merged_usr: true,
        dpkg_metadata: true,
        limits: opts.deb_limits(),
    };
    st.say("Unpacking", format!("{} packages", pkgs.len()));
    let entries: BTreeMap<(String, String), Vec<Entry>> = pkgs
        .par_iter()
        .map(|p| -> Result<_> {
            let input = layer::package::PackageInput {
                name: p.locked.name.clone(),
                deb: p.deb.clone(),
                control: p.control.clone(),
            };
            let e = layer::package::package_entries(&input, &spool, &popts)?;
            Ok(((p.locked.name.clone(), p.locked.version.clone()), e))
        })
        .collect::<Result<_>>()?;
    let closure_entries = |name: &str, stage: &str| -> Vec<Entry> {
        lock.get(name, stage)
            .map(|l| {
                l.packages
                    .iter()
                    .flat_map(|p| entries[&(p.name.clone(), p.version.clone())].clone())
                    .collect()
            })
            .unwrap_or_default()
    };

    // 4. Layers: base, one per image (packages + files), one per build stage (scratch).
    struct LayerJob {
        key: String,
        entries: Vec<Entry>,
        lower_symlinks: bool,
        scratch: bool,
    }
    // A vendor base (pinned by digest, from a local OCI layout) goes below.
    let vendor = match &tree.base.from {
        recipe::From::Pinned {
            digest,
            layout: Some(l),
            ..
        } => {
            st.say("Importing", format!("{} from {}", digest, l.display()));
            Some(image::vendor::import(l, digest, &blobs)?)
        }
        recipe::From::Pinned { reference, .. } => {
            bail!(
                "{reference}: no from-layout to read it from\nhelp: add from-layout = \"path/to/oci-layout\""
            )
        }
        _ => None,
    };
    for img in &tree.images {
        if let recipe::From::Pinned { reference, .. } = &img.from {
            bail!(
                "{}: from = {reference:?}: every image is built on the common base\nhelp: remove `from` from the recipe, or move the vendor image to base/base.toml",
                img.file.display()
            );
        }
    }
    let mut jobs_list = vec![LayerJob {
        key: "base".into(),
        entries: {
            let mut v = if vendor.is_none() {
                layer::package::merged_usr_entries(sde_u)
            } else {
                Vec::new()
            };
            v.extend(closure_entries(&tree.base.name, "runtime"));
            v.extend(file_entries(&tree.base, sde_u)?);
            v
        },
        lower_symlinks: false,
        scratch: false,
    }];
    for img in &tree.images {
        let mut v = closure_entries(&img.name, "runtime");
        v.extend(file_entries(img, sde_u)?);
        if !v.is_empty() {
            jobs_list.push(LayerJob {
                key: format!("{}/runtime", img.name),
                entries: v,
                lower_symlinks: true,
                scratch: false,
            });
        }
        if img.build.is_some() {
            jobs_list.push(LayerJob {
                key: format!("{}/build", img.name),
                entries: closure_entries(&img.name, "build"),
                lower_symlinks: true,
                scratch: true,
            });
        }
    }
    if let Some(l) = lock.get(&tree.base.name, "toolset") {
        jobs_list.push(LayerJob {
            key: "toolset".into(),
            entries: closure_entries(&l.name, "toolset"),
            lower_symlinks: true,
            scratch: true,
        });
    }
    let base_symlinks: BTreeSet<String> = jobs_list[0]
        .entries
        .iter()
        .filter(|e| matches!(e.kind, layer::Kind::Symlink(_)))
        .map(|e| e.path.clone())
        .collect();
    st.say(
        "Layers",
        format!("writing {} layers with {jobs} job(s)", jobs_list.len()),
    );
    let none = BTreeSet::new();
    let written: BTreeMap<String, LayerBlob> = jobs_list
        .into_par_iter()
        .map(|j| -> Result<(String, LayerBlob)> {
            let lower = if j.lower_symlinks {
                &base_symlinks
            } else {
                &none
            };
            let norm = layer::normalize(j.entries, lower, sde_u)
                .with_context(|| format!("layer {}", j.key))?;
            // Build-stage roots never ship: compress them cheaply.
            let wopts = if j.scratch {
                layer::WriteOptions {
                    blobs_dir: scratch_blobs.clone(),
                    compression: Compression::Zstd(1),
                }
            } else {
                layer::WriteOptions {
                    blobs_dir: blobs.clone(),
                    compression: opts.compression,
                }
            };
            let blob = layer::write_layer(&norm, &wopts)?;
            Ok((j.key, blob))
        })
        .collect::<Result<_>>()?;
    let mut layer_bytes: u64 = written.values().map(|b| b.tar_size).sum();

    let mut base_layers: Vec<LayerBlob> = vendor
        .as_ref()
        .map(|v| v.layers.clone())
        .unwrap_or_default();
    base_layers.push(written["base"].clone());
    let mut base_history: Vec<image::History> = vendor
        .as_ref()
        .map(|v| {
            v.history
                .iter()
                .map(|h| image::History {
                    created_by: h.clone(),
                    comment: Some("vendor base image".into()),
                })
                .collect()
        })
        .unwrap_or_default();
    base_history.push(image::History {
        created_by: format!(
            "imgforge: base packages {}",
            names(lock.get(&tree.base.name, "runtime"))
        ),
        comment: Some("merged-/usr root with dpkg status.d metadata".into()),
    });
    // 4b. Configure: maintainer scripts and triggers, a layer per root.
    let cfg = ConfigureRun {
        lock,
        base: &tree.base.name,
        pkgs: &pkg_by_key,
        entries: &entries,
        toolset_layer: written
            .get("toolset")
            .map(|b| scratch_blobs.join(hex(&b.digest))),
        work: scratch.path().to_path_buf(),
        logs: cache_dir(&opts.common).join("logs"),
        lower: &base_symlinks,
        sde: sde_u,
        arch: tree.source.arch.clone(),
        st,
    };
    let ship = layer::WriteOptions {
        blobs_dir: blobs.clone(),
        compression: opts.compression,
    };
    let layer_path = |l: &LayerBlob| blobs.join(hex(&l.digest));
    let base_paths: Vec<PathBuf> = base_layers.iter().map(layer_path).collect();
    let base_cfg = cfg.run(&tree.base, "runtime", base_paths.clone(), &[], &ship)?;
    if let Some(l) = base_cfg {
        layer_bytes += l.tar_size;
        base_layers.push(l);
        base_history.push(cfg.history(&tree.base.name, "runtime"));
    }
    let base_paths: Vec<PathBuf> = base_layers.iter().map(layer_path).collect();
    // Images (and build-stage roots) configure independently: in parallel.
    let below = [(tree.base.name.as_str(), "runtime")];
    let scratch_write = layer::WriteOptions {
        blobs_dir: scratch_blobs.clone(),
        compression: Compression::Zstd(1),
    };
    let written_ref = &written;
    let roots: Vec<(&Recipe, &str, &LayerBlob)> = tree
        .images
        .iter()
        .flat_map(|img| {
            ["runtime", "build"].into_iter().filter_map(move |stage| {
                Some((
                    img,
                    stage,
                    written_ref.get(&format!("{}/{stage}", img.name))?,
                ))
            })
        })
        .collect();
    let configured: Vec<(String, Option<LayerBlob>)> = roots
        .into_par_iter()
        .map(|(img, stage, l)| -> Result<(String, Option<LayerBlob>)> {
            let mut layers = base_paths.clone();
            let (dir, w) = if stage == "build" {
                (&scratch_blobs, &scratch_write)
            } else {
                (&blobs, &ship)
            };
            layers.push(dir.join(hex(&l.digest)));
            let c = cfg.run(img, stage, layers, &below, w)?;
            Ok((format!("{}/{stage}", img.name), c))
        })
        .collect::<Result<_>>()?;
    let mut config_layers: BTreeMap<String, LayerBlob> = BTreeMap::new();
    for (k, c) in configured.into_iter() {
        if let Some(c) = c {
            if k.ends_with("/runtime") {
                layer_bytes += c.tar_size;
            }
            config_layers.insert(k, c);
        }
    }
    let mut base_config = tree.base.config.clone();
    if let Some(v) = &vendor {
        for kv in &v.env {
            if let Some((k, val)) = kv.split_once('=') {
                base_config
                    .env
                    .entry(k.to_string())
                    .or_insert_with(|| val.to_string());
            }
        }
    }

    // 5. Build stages.
    let mut cached_stages = 0;
    let mut run_stages = 0;
    let mut artifact_layers: BTreeMap<String, (LayerBlob, Vec<sbom::SbomFile>)> = BTreeMap::new();
    for img in &tree.images {
        let Some(b) = &img.build else { continue };
        let t = Instant::now();
        st.say(
            "Building",
            format!("{} (build stage, {} steps)", img.name, b.steps.len()),
        );
        let spec = sandbox::StageSpec {
            recipe: img.name.clone(),
            layers: base_layers
                .iter()
                .map(|l| blobs.join(hex(&l.digest)))
                .chain(std::iter::once(
                    scratch_blobs.join(hex(&written[&format!("{}/build", img.name)].digest)),
                ))
                .chain(
                    config_layers
                        .get(&format!("{}/build", img.name))
                        .map(|c| scratch_blobs.join(hex(&c.digest))),
                )
                .collect(),
            context: b.context.clone(),
            steps: b.steps.clone(),
            env: b.env.clone(),
            artifacts: b.artifacts.clone(),
            source_date_epoch: sde_u,
            limits: b.limits,
        };
        let sopts = sandbox::SandboxOptions {
            cache_dir: opts
                .use_cache
                .then(|| cache_dir(&opts.common).join("stages")),
            work_dir: scratch.path().to_path_buf(),
            runtime: None,
            logs: Some(cache_dir(&opts.common).join("logs")),
        };
        let out_stage = sandbox::run_stage(&spec, &sopts)?;
        if out_stage.cached {
            cached_stages += 1;
            st.say(
                "Reused",
                format!(
                    "{} build stage from the cache ({})",
                    img.name,
                    &out_stage.cache_key[..12]
                ),
            );
        } else {
            run_stages += 1;
            st.say(
                "Built",
                format!(
                    "{} build stage in {:.1}s",
                    img.name,
                    t.elapsed().as_secs_f64()
                ),
            );
        }
        let ents = sandbox::artifact_entries(&out_stage, &img.copies, sde_u)?;
        let files: Vec<sbom::SbomFile> = ents
            .iter()
            .filter(|e| e.kind == layer::Kind::File)
            .map(|e| sbom::SbomFile {
                path: e.path.clone(),
                sha256: e.sha256.map(hex::encode).unwrap_or_default(),
                size: e.size,
            })
            .collect();
        let norm = layer::normalize(ents, &base_symlinks, sde_u)
            .with_context(|| format!("artifact layer of {}", img.name))?;
        let blob = layer::write_layer(
            &norm,
            &layer::WriteOptions {
                blobs_dir: blobs.clone(),
                compression: opts.compression,
            },
        )?;
        layer_bytes += blob.tar_size;
        artifact_layers.insert(img.name.clone(), (blob, files));
    }

    // 6. Images.
    let arch = tree.source.arch.clone();
    let mut specs = vec![image::ImageSpec {
        name: tree.base.name.clone(),
        tag: tree.base.tag.clone(),
        config: base_config.clone(),
        layers: base_layers.clone(),
        history: base_history.clone(),
        source_date_epoch: sde,
        arch: arch.clone(),
        annotations: BTreeMap::new(),
    }];
    for img in &tree.images {
        let mut layers = base_layers.clone();
        let mut history = base_history.clone();
        if let Some(l) = written.get(&format!("{}/runtime", img.name)) {
            layers.push(l.clone());
            history.push(image::History {
                created_by: format!(
                    "imgforge: packages {}{}",
                    names(lock.get(&img.name, "runtime")),
                    if img.files.is_empty() {
                        String::new()
                    } else {
                        format!(" + {} recipe file(s)", img.files.len())
                    }
                ),
                comment: None,
            });
        }
        if let Some(c) = config_layers.get(&format!("{}/runtime", img.name)) {
            layers.push(c.clone());
            history.push(cfg.history(&img.name, "runtime"));
        }
        if let Some((l, _)) = artifact_layers.get(&img.name) {
            layers.push(l.clone());
            history.push(image::History {
                created_by: format!(
                    "imgforge: build-stage artifacts {}",
                    img.copies
                        .iter()
                        .map(|c| c.to.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                comment: None,
            });
        }
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.base.name".into(),
            tree.base.reference(),
        );
        specs.push(image::ImageSpec {
            name: img.name.clone(),
            tag: img.tag.clone(),
            config: merge_config(&base_config, &img.config),
            layers,
            history,
            source_date_epoch: sde,
            arch: arch.clone(),
            annotations,
        });
    }
    // The base manifest digest is known once written; annotate the others.
    let base_written = image::write_image(&specs[0], &blobs)?;
    let mut images = vec![base_written.clone()];
    for s in &mut specs[1..] {
        s.annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            base_written.manifest.digest.clone(),
        );
        images.push(image::write_image(s, &blobs)?);
    }
    image::write_index(layout, &images)?;

    // 7. SBOMs and legal reports.
    let sbom_pkg = |p: &LockedPackage| -> sbom::SbomPackage {
        let full = pkg_by_key[&(p.name.clone(), p.version.clone())];
        sbom::SbomPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            source: p.source.clone(),
            source_version: p.source_version.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            filename: p.filename.clone(),
            deb_path: full.deb.clone(),
            control: full.control.clone(),
        }
    };
    let base_pkgs: Vec<&LockedPackage> = lock
        .get(&tree.base.name, "runtime")
        .map(|l| l.packages.iter().collect())
        .unwrap_or_default();
    let mut sbom_images = Vec::new();
    for (i, w) in images.iter().enumerate() {
        let (recipe, is_base): (&Recipe, bool) = if i == 0 {
            (&tree.base, true)
        } else {
            (&tree.images[i - 1], false)
        };
        let mut packages: Vec<sbom::SbomPackage> = base_pkgs.iter().map(|p| sbom_pkg(p)).collect();
        let mut build_packages = Vec::new();
        let mut artifacts = Vec::new();
        if !is_base {
            if let Some(l) = lock.get(&recipe.name, "runtime") {
                packages.extend(l.packages.iter().map(sbom_pkg));
            }
            if let Some(l) = lock.get(&recipe.name, "build") {
                build_packages.extend(l.packages.iter().map(sbom_pkg));
            }
            if let Some((_, files)) = artifact_layers.get(&recipe.name) {
                artifacts = files.clone();
            }
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        build_packages.sort_by(|a, b| a.name.cmp(&b.name));
        sbom_images.push(sbom::SbomImage {
            name: w.name.clone(),
            tag: w.tag.clone(),
            manifest_digest: w.manifest.digest.clone(),
            config_digest: w.config.digest.clone(),
            packages,
            build_packages,
            artifacts,
        });
    }
    let available: BTreeMap<String, PathBuf> = pkgs
        .iter()
        .map(|p| (p.locked.name.clone(), p.deb.clone()))
        .collect();
    st.say("SBOM", "SPDX 2.3, CycloneDX 1.6 and license reports");
    let sbom_summary = sbom::write_all(&sbom::SbomOptions {
        out_dir: layout.to_path_buf(),
        source_date_epoch: sde,
        distro: tree.source.distro.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        images: sbom_images,
        available,
        jobs,
        limits: opts.deb_limits(),
    })?;
    if sbom_summary.needs_review > 0 {
        st.say(
            "Review",
            format!(
                "{} package(s) flagged for legal review (see legal/all.md)",
                sbom_summary.needs_review
            ),
        );
    }

    // 8. The record of what was produced.
    crate::verify::record::write(layout, &images, sde)?;
    image::per_image::write_all(layout, &images, sde)?;

    // 9. Bundle, then swap the staging directory into place.
    if let Some(bundle) = &opts.bundle {
        if let Some(p) = bundle.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(p)?;
        }
        image::write_bundle(layout, &images, bundle, sde)?;
        st.say("Bundle", bundle.display());
    }
    let staged = staging.keep();
    replace_dir(&staged, out)?;
    for img in &images {
        st.say(
            "Image",
            format!(
                "{} {} ({} layers, {})",
                img.reference(),
                img.manifest.digest,
                img.layers.len(),
                crate::metadata::human(img.layers.iter().map(|l| l.size).sum())
            ),
        );
    }
    Ok(BuildSummary {
        images,
        out: out.clone(),
        layer_bytes,
        cached_stages,
        run_stages,
    })
}

/// The Debian point release the base ships (from its locked base-files).
fn debian_release(
    lock: &Lock,
    base: &str,
    pkgs: &BTreeMap<(String, String), &Pkg>,
) -> Result<Option<crate::release::DebianRelease>> {
    let Some(bf) = lock
        .get(base, "runtime")
        .and_then(|l| l.packages.iter().find(|p| p.name == "base-files"))
    else {
        return Ok(None);
    };
    let deb = &pkgs[&(bf.name.clone(), bf.version.clone())].deb;
    Ok(Some(crate::release::read_release(deb, &bf.version)?))
}

/// What every configure run of a build shares (see [`crate::configure`]).
struct ConfigureRun<'a> {
    lock: &'a Lock,
    base: &'a str,
    pkgs: &'a BTreeMap<(String, String), &'a Pkg>,
    entries: &'a BTreeMap<(String, String), Vec<Entry>>,
    toolset_layer: Option<PathBuf>,
    work: PathBuf,
    /// Where a failed configure run's full log is kept (the scratch
    /// directory `work` is deleted when the build fails).
    logs: PathBuf,
    lower: &'a BTreeSet<String>,
    sde: u64,
    arch: String,
    st: Status,
}

impl ConfigureRun<'_> {
    fn refs(&self, name: &str, stage: &str, paths: bool) -> Vec<configure::PackageRef> {
        let Some(l) = self.lock.get(name, stage) else {
            return Vec::new();
        };
        l.packages
            .iter()
            .map(|p| {
                let key = (p.name.clone(), p.version.clone());
                let full = self.pkgs[&key];
                configure::PackageRef {
                    name: p.name.clone(),
                    deb: full.deb.clone(),
                    control: full.control.clone(),
                    paths: if paths {
                        self.entries[&key].iter().map(|e| e.path.clone()).collect()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect()
    }

    /// Configure `recipe`'s `stage` packages on `layers`; the layer, or
    /// `None` when nothing changed or the recipe opted out (with a warning
    /// listing what would have been created).
    fn run(
        &self,
        recipe: &Recipe,
        stage: &str,
        layers: Vec<PathBuf>,
        below: &[(&str, &str)],
        write: &layer::WriteOptions,
    ) -> Result<Option<LayerBlob>> {
        let t = Instant::now();
        let label = if stage == "build" {
            format!("{} (build stage)", recipe.name)
        } else {
            recipe.name.clone()
        };
        let mut present = self.refs(self.base, "toolset", false);
        for (n, s) in below {
            present.extend(self.refs(n, s, false));
        }
        let spec = configure::ConfigureSpec {
            label: label.clone(),
            layers,
            toolset_layer: self.toolset_layer.clone(),
            configure: self.refs(&recipe.name, stage, true),
            present,
            debconf: recipe.configure.debconf.clone(),
            source_date_epoch: self.sde,
            arch: self.arch.clone(),
        };
        if spec.configure.is_empty() {
            return Ok(None);
        }
        if spec.toolset_layer.is_none() {
            self.warn_no_toolset(&spec);
            return Ok(None);
        }
        let out = configure::configure(
            &spec,
            &configure::ConfigureOptions {
                work_dir: self.work.clone(),
                runtime: None,
                lower_symlinks: self.lower.clone(),
                write: write.clone(),
                logs: Some(self.logs.clone()),
            },
        )?;
        if !recipe.configure.enabled {
            let list: Vec<String> = out
                .created
                .iter()
                .map(|(p, path)| format!("    /{path} ({p})"))
                .collect();
            self.st.say(
                "Warning",
                format!(
                    "{label}: configure = false: skipped {} maintainer script(s); they would have created or changed {} path(s):\n{}",
                    out.scripts,
                    list.len(),
                    list.join("\n")
                ),
            );
            return Ok(None);
        }
        self.st.say(
            "Configured",
            format!(
                "{label}: {} script(s), {} path(s) in {:.1}s",
                out.scripts,
                out.created.len(),
                t.elapsed().as_secs_f64()
            ),
        );
        Ok(out.layer)
    }

    fn warn_no_toolset(&self, spec: &configure::ConfigureSpec) {
        let with: Vec<&str> = spec
            .configure
            .iter()
            .filter(|p| p.has_scripts())
            .map(|p| p.name.as_str())
            .collect();
        if !with.is_empty() {
            self.st.say(
                "Warning",
                format!(
                    "{}: no [configure] toolset in the base recipe: maintainer scripts of {} not run",
                    spec.label,
                    with.join(", ")
                ),
            );
        }
    }

    fn history(&self, name: &str, stage: &str) -> image::History {
        image::History {
            created_by: format!("imgforge: configure {}", names(self.lock.get(name, stage))),
            comment: Some("maintainer scripts and triggers".into()),
        }
    }
}

fn hex(d: &str) -> &str {
    d.trim_start_matches("sha256:")
}

fn names(l: Option<&resolve::LockedImage>) -> String {
    l.map(|l| {
        l.packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// Entries for a recipe's `[[files]]`.
fn file_entries(r: &Recipe, sde: u64) -> Result<Vec<Entry>> {
    let mut v = Vec::new();
    for f in &r.files {
        let meta = std::fs::symlink_metadata(&f.src)
            .with_context(|| format!("{}: cannot read {}", r.file.display(), f.src.display()))?;
        if !meta.is_file() {
            bail!(
                "{}: {} is not a regular file\nhelp: [[files]] adds regular files; symlinks are not followed",
                r.file.display(),
                f.src.display()
            );
        }
        let (sha, size) = crate::digest::sha256_file(&f.src)?;
        let mut sha_b = [0u8; 32];
        hex::decode_to_slice(&sha, &mut sha_b).expect("hex digest");
        use std::os::unix::fs::PermissionsExt;
        // Never the host umask: declared mode, else 0755 for executables, 0644 otherwise.
        let mode = f.mode.unwrap_or(if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        });
        v.push(Entry {
            path: f.dest.clone(),
            kind: layer::Kind::File,
            mode,
            uid: f.owner.uid,
            gid: f.owner.gid,
            uname: String::new(),
            gname: String::new(),
            mtime: sde,
            size,
            content: layer::Content::Path(f.src.clone()),
            sha256: Some(sha_b),
            origin: format!("recipe file {}", f.src.display()),
        });
    }
    Ok(v)
}

/// Put `staged` at `out`, keeping the old output until the new one is in place.
fn replace_dir(staged: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let old = tempfile::Builder::new()
            .prefix(".imgforge-old-")
            .tempdir_in(parent)?;
        let old_path = old.path().join("out");
        std::fs::rename(out, &old_path)
            .with_context(|| format!("cannot move the previous {} aside", out.display()))?;
        if let Err(e) = std::fs::rename(staged, out) {
            let _ = std::fs::rename(&old_path, out);
            return Err(e)
                .with_context(|| format!("cannot move the new output to {}", out.display()));
        }
        drop(old);
    } else {
        std::fs::rename(staged, out)
            .with_context(|| format!("cannot move the new output to {}", out.display()))?;
    }
    Ok(())
}

/// `imgforge verify`: see [`crate::verify`].
pub fn verify(opts: &VerifyOptions) -> Result<bool> {
    crate::verify::run(opts)
}

/// `imgforge push`: see [`crate::registry`]. Prints one line per image and
/// a summary (or the summary as JSON on stdout).
pub fn push(opts: &crate::registry::PushOptions, json: bool, quiet: bool) -> Result<()> {
    let st = Status { quiet };
    let t0 = Instant::now();
    let summary = crate::registry::push(opts, &|p| {
        st.say(
            "Pushed",
            format!(
                "{} {} ({} uploaded, {} bytes; {} mounted; {} already there{})",
                p.reference,
                p.manifest_digest,
                p.uploaded,
                p.uploaded_bytes,
                p.mounted,
                p.skipped,
                if p.manifest_sent {
                    ""
                } else {
                    "; tag unchanged"
                }
            ),
        )
    })?;
    st.say(
        "Finished",
        format!(
            "push of {} image(s) to {} in {:.1}s: {} blob(s), {} bytes uploaded, {} mounted, {} skipped",
            summary.images.len(),
            summary.registry,
            t0.elapsed().as_secs_f64(),
            summary.uploaded(),
            summary.uploaded_bytes(),
            summary.mounted(),
            summary.skipped()
        ),
    );
    if json {
        println!(
            "{}",
            String::from_utf8_lossy(&crate::json::to_canonical(&summary.to_json()))
        );
    }
    Ok(())
}
