//! The commands, one thin function per command (one file each), taking an
//! options struct; `main.rs` parses arguments, calls them and maps errors
//! to exit codes. The work is in the library modules: [`crate::plan`]
//! (build), [`crate::verify`], [`crate::registry`] (push),
//! [`crate::resolve`] and [`crate::archive`].

pub mod add;
pub mod bundle;
pub mod check;
pub mod fsck;
pub mod gc;
pub mod init;
pub mod lock;
pub mod push;
pub mod query;
pub mod remove;
pub mod sources;
pub mod update;
pub mod vendor;

pub use crate::fsutil::write_atomic;
pub use crate::options::{BuildOptions, CommonOptions, Executor, LayerPolicy, RemoteCacheOptions};
pub use crate::plan::BuildSummary;
pub use crate::resolve::lockfile::{lock_for_build, lock_tree};
pub use crate::ui::Status;
pub use crate::verify::VerifyOptions;
pub use check::check;
pub use lock::{explain, lock};
pub use push::push;

use anyhow::Result;
use std::path::PathBuf;

/// The cache directory of a command (see [`CommonOptions::cache_dir`]).
pub fn cache_dir(opts: &CommonOptions) -> PathBuf {
    opts.cache_dir()
}

/// Read the recipe tree a command names.
pub fn load_tree(opts: &CommonOptions) -> Result<crate::recipe::Tree> {
    Ok(crate::recipe::load_tree(&crate::recipe::LoadOptions::new(
        opts,
    ))?)
}

/// Where a command's packages come from; `refresh` downloads Release and
/// indexes again.
pub fn source_options(opts: &CommonOptions, refresh: bool) -> crate::resolve::SourceOptions {
    crate::resolve::SourceOptions::new(opts, refresh)
}

/// Render an error chain with its `help:` lines for the terminal.
/// A build whose images failed ([`crate::plan::BuildFailed`]) gives each
/// failure so, in image-name order, then its summary.
pub fn render_error(e: &anyhow::Error) -> String {
    if let Some(failed) = e.downcast_ref::<crate::plan::BuildFailed>() {
        let mut all: Vec<String> = failed
            .failures
            .iter()
            .map(|f| render_error(&f.error))
            .collect();
        all.push(format!("error: {failed}"));
        return all.join("\n\n");
    }
    let mut s = format!("error: {e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!("\n  caused by: {c}"));
        }
    }
    s.replace("error: error: ", "error: ")
}

/// `imgforge build`: see [`crate::plan`]. The outputs are staged beside
/// `--out` and renamed into place at the end: a failed or interrupted build
/// leaves the previous output untouched.
pub fn build(opts: &BuildOptions) -> Result<BuildSummary> {
    crate::plan::build(opts)
}

/// `imgforge verify`: see [`crate::verify`].
pub fn verify(opts: &VerifyOptions) -> Result<bool> {
    crate::verify::run(opts)
}
