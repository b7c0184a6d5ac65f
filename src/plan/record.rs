//! The build record: `imgforge-record.json` in the output directory.
//!
//! A small, deterministic, machine-readable list of everything a build
//! produced: per image its manifest, config and layers (digest, diff_id,
//! size), and the sha256 of every other output file (SBOMs, reports,
//! `index.json`). Teams commit it; `imgforge verify --against` rebuilds and
//! compares with it.

use crate::image::WrittenImage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The record's file name inside the output directory.
pub const FILE_NAME: &str = "imgforge-record.json";

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Record {
    pub record_version: u32,
    pub source_date_epoch: i64,
    /// By reference (`name:tag`).
    pub images: BTreeMap<String, RecordImage>,
    /// Every other output file (relative path -> `sha256:<hex>`), blobs excluded.
    pub files: BTreeMap<String, String>,
}

/// One image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordImage {
    pub manifest: String,
    pub config: String,
    pub layers: Vec<RecordLayer>,
}

/// One layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordLayer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
}

/// Build the record of `layout` (after everything else is written).
/// `known` gives the digests of files already hashed (large archives made
/// from the store), by path relative to the layout.
pub fn collect(
    layout: &Path,
    images: &[WrittenImage],
    sde: i64,
    known: &BTreeMap<String, String>,
) -> std::io::Result<Record> {
    let mut files = BTreeMap::new();
    for e in walkdir::WalkDir::new(layout).sort_by_file_name() {
        let e = e.map_err(std::io::Error::other)?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(layout)
            .expect("walk stays below the layout")
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("blobs/") || rel == FILE_NAME {
            continue;
        }
        let digest = match known.get(&rel) {
            Some(d) => d.clone(),
            None => format!("sha256:{}", crate::digest::sha256_file(e.path())?.0),
        };
        files.insert(rel, digest);
    }
    let images = images
        .iter()
        .map(|i| {
            (
                i.reference(),
                RecordImage {
                    manifest: i.manifest.digest.clone(),
                    config: i.config.digest.clone(),
                    layers: i
                        .layers
                        .iter()
                        .map(|l| RecordLayer {
                            digest: l.digest.clone(),
                            diff_id: l.diff_id.clone(),
                            size: l.size,
                        })
                        .collect(),
                },
            )
        })
        .collect();
    Ok(Record {
        record_version: 1,
        source_date_epoch: sde,
        images,
        files,
    })
}

/// Write the record into `layout`.
pub fn write(
    layout: &Path,
    images: &[WrittenImage],
    sde: i64,
    known: &BTreeMap<String, String>,
) -> std::io::Result<Record> {
    let rec = collect(layout, images, sde, known)?;
    let v = serde_json::to_value(&rec).map_err(std::io::Error::other)?;
    std::fs::write(layout.join(FILE_NAME), crate::json::to_canonical_pretty(&v))?;
    Ok(rec)
}

/// Read a record file.
pub fn read(path: &Path) -> Result<Record, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an imgforge record: {e}", path.display()))
}
