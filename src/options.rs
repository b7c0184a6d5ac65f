//! Options shared by the commands and the pipeline stages: where recipes and
//! packages come from ([`CommonOptions`]) and what a build makes
//! ([`BuildOptions`]).
//!
//! A leaf module (it imports nothing from the crate): the commands, the
//! build plan and `verify` all use it, so none of them needs another's types.

use std::ffi::OsString;
use std::path::PathBuf;

/// Options shared by every command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonOptions {
    pub recipes: PathBuf,
    pub base: Option<PathBuf>,
    pub mirror: Option<PathBuf>,
    pub apt: bool,
    pub cache: Option<PathBuf>,
}

impl CommonOptions {
    /// The cache directory: `--cache`, else `$XDG_CACHE_HOME/imgforge`, else
    /// `~/.cache/imgforge`. (Where the cache is never reaches an output.)
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(c) = &self.cache {
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
}

/// How packages are split into layers (see [`crate::plan::group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPolicy {
    /// One layer for the base's packages and one for each image's.
    Single,
    /// Packages grouped by source package, at most this many layers per image.
    Budget(usize),
}

impl LayerPolicy {
    /// The value of `--layers` that means this policy.
    pub fn flag(&self) -> String {
        match self {
            LayerPolicy::Single => "single".to_string(),
            LayerPolicy::Budget(n) => n.to_string(),
        }
    }

    /// The documented default: at most 16 layers per image.
    pub const DEFAULT: LayerPolicy = LayerPolicy::Budget(16);
}

/// Options of `build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub common: CommonOptions,
    pub out: PathBuf,
    pub bundle: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub compression: Compression,
    pub locked: bool,
    /// Reuse cached steps (layers, configuration, build stages, SBOMs).
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
    /// How packages are split into layers.
    pub layers: LayerPolicy,
    /// Sign each image's provenance with this PKCS#8 PEM private key.
    pub sign_key: Option<PathBuf>,
    /// Unpack every layer into configure and build-stage roots instead of
    /// mounting shared layer trees (see [`crate::sandbox::overlay`]).
    pub unpack_roots: bool,
    /// Where the build's scratch directory goes (`None`: a tmpfs with
    /// room, else beside the output; see `plan::scratch::parent`).
    pub scratch: Option<PathBuf>,
    /// What runs the steps of `[build]` stages.
    pub executor: Executor,
    /// The remote step cache (`--cache-from`, `--cache-to`).
    pub remote: RemoteCacheOptions,
}

/// The remote step cache named on the command line (see
/// `crate::plan::remote`): each is `REGISTRY/REPOSITORY`. The base
/// recipe's `[cache]` fills what the flags leave unset, unless `ignore_recipe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteCacheOptions {
    /// `--cache-from`: read step results from here.
    pub from: Option<String>,
    /// `--cache-to`: read step results from here and upload what this build made.
    pub to: Option<String>,
    /// `--no-remote-cache`: ignore the recipe's `[cache]` (flags still count).
    pub ignore_recipe: bool,
}

impl BuildOptions {
    /// The command line of `imgforge build` that means these options: the
    /// one place options become flags again (`verify` runs its builds with
    /// it; a test in `cli.rs` parses it back). `source_date_epoch` is not a
    /// flag: it travels as `SOURCE_DATE_EPOCH` in the environment.
    pub fn to_args(&self) -> Vec<OsString> {
        let c = &self.common;
        let mut a: Vec<OsString> = Vec::new();
        if self.quiet {
            a.push("--quiet".into());
        }
        a.extend(["build".into(), c.recipes.clone().into_os_string()]);
        let mut opt = |flag: &str, v: Option<OsString>| {
            if let Some(v) = v {
                a.extend([flag.into(), v]);
            }
        };
        let path = |p: &Option<PathBuf>| p.clone().map(PathBuf::into_os_string);
        opt("--base", path(&c.base));
        opt("--mirror", path(&c.mirror));
        opt("--cache", path(&c.cache));
        opt("--out", Some(self.out.clone().into_os_string()));
        opt("--bundle", path(&self.bundle));
        opt("--jobs", self.jobs.map(|j| j.to_string().into()));
        opt("--compression", Some(self.compression.flag().into()));
        opt("--metadata-file", path(&self.metadata_file));
        let entries = self.max_package_entries.to_string();
        opt("--max-package-entries", Some(entries.into()));
        opt("--layers", Some(self.layers.flag().into()));
        opt("--sign-key", path(&self.sign_key));
        opt("--scratch", path(&self.scratch));
        if self.executor != Executor::Runc {
            opt("--executor", Some(self.executor.flag().into()));
        }
        opt("--cache-from", self.remote.from.clone().map(Into::into));
        opt("--cache-to", self.remote.to.clone().map(Into::into));
        for (on, flag) in [
            (!c.apt, "--no-apt"),
            (self.locked, "--locked"),
            (!self.use_cache, "--no-cache"),
            (self.force, "--force"),
            (self.unpack_roots, "--unpack-roots"),
            (self.remote.ignore_recipe, "--no-remote-cache"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if self.json {
            a.extend(["--format".into(), "json".into()]);
        }
        a
    }

    /// Worker threads: `--jobs`, else every core.
    pub fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// Check a remote cache reference, `REGISTRY/REPOSITORY` (a host with an
/// optional port, then a repository path of lowercase letters, digits,
/// `.`, `_`, `-` and `/`), as `--cache-from`, `--cache-to` and the base
/// recipe's `[cache]` take it.
pub fn check_cache_ref(s: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "{s:?}: {why}; expected REGISTRY/REPOSITORY, e.g. 127.0.0.1:5000/team/imgforge-cache"
        ))
    };
    if s.contains("://") {
        return bad("no scheme (HTTPS is used, plain HTTP for loopback registries)");
    }
    let Some((host, repo)) = s.split_once('/') else {
        return bad("no repository");
    };
    let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if host.is_empty() || !host.chars().all(host_ok) {
        return bad("not a registry host");
    }
    let repo_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    let parts_ok = repo.split('/').all(|p| {
        p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.ends_with(|c: char| c.is_ascii_alphanumeric())
    });
    if repo.is_empty() || !repo.chars().all(repo_ok) || !parts_ok || repo.len() > 200 {
        return bad("a repository is lowercase letters, digits, '.', '_', '-' and '/' separators");
    }
    Ok(s.to_string())
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip via miniz_oxide at this level (default 6).
    Gzip(u32),
    /// zstd at this level, single-threaded (default 3).
    Zstd(i32),
}

impl Compression {
    /// gzip at the default level (6): what `docker load` of any age reads.
    pub const GZIP: Compression = Compression::Gzip(6);
    /// zstd at the default level (3).
    pub const ZSTD: Compression = Compression::Zstd(3);

    /// The value of `--compression` that means this compression.
    pub fn flag(&self) -> &'static str {
        match self {
            Compression::Gzip(_) => "gzip",
            Compression::Zstd(_) => "zstd",
        }
    }

    /// The OCI media type of a layer with this compression.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::Gzip(_) => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd(_) => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// What runs the steps of a recipe's `[build]` stage (see
/// `crate::sandbox`). The stage's result is the same bytes either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Executor {
    /// The local OCI runtime (crun or runc) in imgforge's own sandbox.
    #[default]
    Runc,
    /// A BuildKit reached through the docker CLI: the engine of `host`
    /// (`docker -H`), else the one `DOCKER_HOST` or the docker context names.
    Buildkit { host: Option<String> },
}

impl Executor {
    /// The value of `--executor` that means this executor.
    pub fn flag(&self) -> String {
        match self {
            Executor::Runc => "runc".to_string(),
            Executor::Buildkit { host: None } => "buildkit".to_string(),
            Executor::Buildkit { host: Some(h) } => format!("buildkit={h}"),
        }
    }

    /// Parse a value of `--executor`: `runc`, `buildkit` or `buildkit=ADDR`.
    pub fn parse(s: &str) -> Result<Executor, String> {
        match s.split_once('=') {
            None if s == "runc" => Ok(Executor::Runc),
            None if s == "buildkit" => Ok(Executor::Buildkit { host: None }),
            Some(("buildkit", h)) if !h.is_empty() => Ok(Executor::Buildkit {
                host: Some(h.to_string()),
            }),
            _ => Err(format!(
                "{s:?}: expected `runc`, `buildkit` or `buildkit=ADDR` (a docker host, e.g. unix:///run/docker.sock or ssh://builder)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_references() {
        for ok in [
            "127.0.0.1:5000/c",
            "reg.example/team/build-cache",
            "[::1]:5000/a.b_c",
        ] {
            assert_eq!(check_cache_ref(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "127.0.0.1:5000",
            "https://reg.example/c",
            "reg.example/Team",
            "reg.example/",
            "/c",
            "reg.example/a//b",
            "reg.example/-a",
        ] {
            assert!(check_cache_ref(bad).is_err(), "{bad}");
        }
    }
}
