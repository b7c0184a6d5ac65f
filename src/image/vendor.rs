//! Starting the base from a vendor image pinned by digest.
//!
//! `from = "name@sha256:<digest>"` with `from-layout = "dir"` names an image
//! in a local OCI image layout (imgforge never pulls). [`import`] finds the
//! manifest with that digest, checks the sha256 of the manifest, the config
//! and every layer while copying them into the output's blob store, and
//! returns the layers (with their diff_ids from the config) to put below the
//! base's own layer.

use super::ImageError;
use crate::layer::LayerBlob;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What was imported.
#[derive(Debug, Clone)]
pub struct Imported {
    pub layers: Vec<LayerBlob>,
    /// The vendor config's `config.Env` (`KEY=VALUE`).
    pub env: Vec<String>,
    /// The vendor config's history entries (`created_by`).
    pub history: Vec<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::BadLayout {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| crate::digest::is_sha256_hex(h))
        .ok_or_else(|| bad(layout, format!("unsupported digest {digest:?}")))?;
    Ok(layout.join("blobs").join("sha256").join(hex))
}

/// Read and verify a blob (small JSON documents).
fn read_verified(layout: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let p = blob_path(layout, digest)?;
    let bytes = std::fs::read(&p).map_err(|e| bad(&p, format!("cannot read blob: {e}")))?;
    let got = format!("sha256:{}", crate::digest::sha256_hex(&bytes));
    if got != digest {
        return Err(bad(
            &p,
            format!("blob content is {got}, expected {digest}: the layout is corrupt"),
        ));
    }
    Ok(bytes)
}

/// Import the image `digest` from `layout` into `blobs_dir`.
pub fn import(layout: &Path, digest: &str, blobs_dir: &Path) -> Result<Imported, ImageError> {
    if !layout.join("oci-layout").is_file() {
        return Err(bad(layout, "not an OCI image layout (no oci-layout file)"));
    }
    let manifest: Value = serde_json::from_slice(&read_verified(layout, digest)?)
        .map_err(|e| bad(layout, format!("manifest {digest} is not JSON: {e}")))?;
    if manifest.get("manifests").is_some() {
        return Err(bad(
            layout,
            format!(
                "{digest} is an image index; pin the digest of the linux/amd64 manifest inside it"
            ),
        ));
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad(layout, "manifest has no config digest"))?;
    let config: Value = serde_json::from_slice(&read_verified(layout, config_digest)?)
        .map_err(|e| bad(layout, format!("config is not JSON: {e}")))?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| bad(layout, "manifest has no layers"))?;
    if layers.len() != diff_ids.len() {
        return Err(bad(layout, "config diff_ids and manifest layers disagree"));
    }
    let mut out = Vec::new();
    for (l, diff_id) in layers.iter().zip(diff_ids) {
        let d = l["digest"]
            .as_str()
            .ok_or_else(|| bad(layout, "layer without digest"))?;
        let media = l["mediaType"].as_str().unwrap_or_default().to_string();
        let src = blob_path(layout, d)?;
        let dest = blobs_dir.join(d.trim_start_matches("sha256:"));
        let (hex, size) = copy_hashing(&src, &dest)?;
        if format!("sha256:{hex}") != d {
            let _ = std::fs::remove_file(&dest);
            return Err(bad(
                &src,
                format!("layer content is sha256:{hex}, expected {d}"),
            ));
        }
        out.push(LayerBlob {
            digest: d.to_string(),
            diff_id,
            size,
            tar_size: 0,
            media_type: media,
            entries: 0,
        });
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Imported {
        layers: out,
        env: strings(&config["config"]["Env"]),
        history: config["history"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
                    .map(|h| {
                        h["created_by"]
                            .as_str()
                            .unwrap_or("vendor layer")
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn copy_hashing(src: &Path, dest: &Path) -> Result<(String, u64), ImageError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ImageError::Io { path: p, source }
    };
    let mut r = std::fs::File::open(src).map_err(io(src))?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".vendor-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let mut w = crate::digest::HashWriter::new(std::io::BufWriter::new(tmp.as_file()));
    std::io::copy(&mut r, &mut w).map_err(io(src))?;
    let (mut f, hex, n) = w.finish();
    std::io::Write::flush(&mut f).map_err(io(dest))?;
    drop(f);
    tmp.persist(dest).map_err(|e| ImageError::Io {
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok((hex, n))
}
