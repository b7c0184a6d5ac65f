//! License findings remembered between builds.
//!
//! Detection reads a package's copyright file from its `data.tar` (and,
//! through a symlinked doc directory, possibly another package's), which
//! for large packages means decompressing most of the archive. A finding
//! depends only on the package's bytes (its sha256), its name, source and
//! section, the source's other binaries in the build, the packages it may
//! follow a link into, and imgforge itself; with those as the key, a
//! remembered finding is the one detection would return again.

use super::license::{LicenseError, LicenseFinding};
use super::{SbomOptions, SbomPackage};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Bumped whenever detection would answer differently for the same inputs.
const FORMAT: u32 = 1;

/// The finding for `p`: remembered, or `detect()`ed and remembered.
pub fn finding(
    opts: &SbomOptions,
    p: &SbomPackage,
    siblings: &BTreeSet<String>,
    detect: impl FnOnce() -> Result<LicenseFinding, LicenseError>,
) -> Result<LicenseFinding, LicenseError> {
    let Some(dir) = &opts.finding_cache else {
        return detect();
    };
    let available: Vec<(&String, String)> = opts
        .available
        .iter()
        .map(|(n, path)| (n, path.to_string_lossy().into_owned()))
        .collect();
    let doc = json!({
        "format": FORMAT,
        "imgforge": env!("CARGO_PKG_VERSION"),
        "package": [p.name, p.version, p.sha256, p.source, p.control.get("Section")],
        "siblings": siblings,
        "available": available,
    });
    let key = hex::encode(Sha256::digest(crate::json::to_canonical(&doc)));
    let path = dir.join(format!("{key}.json"));
    if let Some(f) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<LicenseFinding>(&b).ok())
    {
        return Ok(f);
    }
    let f = detect()?;
    // Remembering is an optimization: a failure to write is not an error.
    if std::fs::create_dir_all(dir).is_ok()
        && let Ok(tmp) = tempfile::NamedTempFile::new_in(dir)
        && let Ok(bytes) = serde_json::to_vec(&f)
        && std::fs::write(tmp.path(), bytes).is_ok()
    {
        let _ = tmp.persist(&path);
    }
    Ok(f)
}
