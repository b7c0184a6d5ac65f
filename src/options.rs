//! Options shared by the commands and the pipeline stages: where recipes and
//! packages come from ([`CommonOptions`]), what a build makes
//! ([`BuildOptions`]), and cargo-style status lines ([`Status`]).
//!
//! A leaf module: [`crate::ops`], [`crate::plan`] and [`crate::verify`] all
//! use it, so none of them needs another's types.

use crate::layer::Compression;
use crate::recipe::{self, Tree};
use crate::resolve::SourceOptions;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Options shared by every command.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    pub recipes: PathBuf,
    pub base: Option<PathBuf>,
    pub mirror: Option<PathBuf>,
    pub apt: bool,
    pub cache: Option<PathBuf>,
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
    /// The documented default: at most 16 layers per image.
    pub const DEFAULT: LayerPolicy = LayerPolicy::Budget(16);
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
}

impl BuildOptions {
    /// Limits applied to every package read by a build.
    pub fn deb_limits(&self) -> crate::deb::Limits {
        crate::deb::Limits {
            entries: self.max_package_entries,
            ..Default::default()
        }
    }

    /// Worker threads: `--jobs`, else every core.
    pub fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// Status lines on stderr (cargo style), unless quiet.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub quiet: bool,
}

impl Status {
    pub fn say(&self, verb: &str, msg: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let line = format!("{verb:>12} {msg}");
        match ACTIVE.lock().ok().and_then(|a| a.clone()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A progress display for long work: a spinner with `msg` (updated with
    /// [`Progress::set`]) when stderr is a terminal, nothing otherwise (the
    /// status lines are the progress then).
    pub fn progress(&self, msg: &str) -> Progress {
        use std::io::IsTerminal;
        if self.quiet || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut a) = ACTIVE.lock() {
            *a = Some(bar.clone());
        }
        Progress { bar: Some(bar) }
    }
}

/// Status lines go above the active progress display, if any.
static ACTIVE: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// A running progress display (see [`Status::progress`]); cleared on drop.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Replace the message.
    pub fn set(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            if let Ok(mut a) = ACTIVE.lock() {
                *a = None;
            }
        }
    }
}

/// Read the recipe tree named by `opts`.
pub fn load_tree(opts: &CommonOptions) -> Result<Tree> {
    Ok(recipe::load_tree(&recipe::LoadOptions {
        recipes: opts.recipes.clone(),
        base: opts.base.clone(),
    })?)
}

/// The cache directory: `--cache`, else `$XDG_CACHE_HOME/imgforge`, else
/// `~/.cache/imgforge`. (Where the cache is never reaches an output.)
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
