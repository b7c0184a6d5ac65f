//! Reading what to push from an OCI image layout: the images named in
//! `index.json` (`org.opencontainers.image.ref.name` = `name:tag`), each
//! manifest's bytes exactly as stored (so its digest is preserved), and the
//! blobs it references.

use super::PushError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A blob an image references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// One image of the layout, ready to push.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    pub name: String,
    pub tag: String,
    pub manifest_digest: String,
    pub media_type: String,
    /// The manifest exactly as stored in the layout.
    pub manifest: Vec<u8>,
    /// Config first, then layers, bottom first.
    pub blobs: Vec<BlobRef>,
}

fn bad(path: &Path, reason: impl Into<String>) -> PushError {
    PushError::Layout {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The path of a blob in the layout, checking the digest's form.
pub fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, PushError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if crate::digest::is_sha256_hex(h) => Ok(layout.join("blobs/sha256").join(h)),
        _ => Err(bad(
            &layout.join("index.json"),
            format!("unsupported digest {digest:?} (only sha256 is supported)"),
        )),
    }
}

fn read_json(path: &Path) -> Result<(Vec<u8>, Value), PushError> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    let v = serde_json::from_slice(&bytes).map_err(|e| bad(path, e.to_string()))?;
    Ok((bytes, v))
}

fn descriptor(layout: &Path, v: &Value, at: &Path) -> Result<BlobRef, PushError> {
    let digest = v["digest"]
        .as_str()
        .ok_or_else(|| bad(at, "a descriptor has no digest"))?;
    let size = v["size"]
        .as_u64()
        .ok_or_else(|| bad(at, format!("descriptor {digest} has no size")))?;
    Ok(BlobRef {
        digest: digest.to_string(),
        size,
        path: blob_path(layout, digest)?,
    })
}

/// Every image of the layout, sorted by reference.
pub fn read_images(layout: &Path) -> Result<Vec<LayoutImage>, PushError> {
    let index_path = layout.join("index.json");
    let (_, index) = read_json(&index_path)?;
    let mut images = Vec::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        let Some(reference) = m["annotations"]["org.opencontainers.image.ref.name"].as_str() else {
            continue;
        };
        let Some((name, tag)) = reference.rsplit_once(':') else {
            continue;
        };
        let media_type = m["mediaType"].as_str().unwrap_or_default().to_string();
        if media_type != crate::image::MEDIA_MANIFEST {
            return Err(bad(
                &index_path,
                format!("{reference}: media type {media_type:?} is not an OCI image manifest"),
            ));
        }
        let d = descriptor(layout, m, &index_path)?;
        let (manifest, mv) = read_json(&d.path)?;
        let found = format!("sha256:{}", crate::digest::sha256_hex(&manifest));
        if found != d.digest {
            return Err(bad(
                &d.path,
                format!(
                    "the manifest of {reference} hashes to {found}, not {}",
                    d.digest
                ),
            ));
        }
        let mut blobs = vec![descriptor(layout, &mv["config"], &d.path)?];
        for l in mv["layers"].as_array().into_iter().flatten() {
            blobs.push(descriptor(layout, l, &d.path)?);
        }
        images.push(LayoutImage {
            name: name.to_string(),
            tag: tag.to_string(),
            manifest_digest: d.digest,
            media_type,
            manifest,
            blobs,
        });
    }
    if images.is_empty() {
        return Err(bad(
            &index_path,
            "no image with an org.opencontainers.image.ref.name annotation",
        ));
    }
    images.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
    Ok(images)
}
