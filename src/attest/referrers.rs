//! OCI 1.1 referrers: each image's SPDX and CycloneDX documents and its
//! provenance (the DSSE envelope when signed, else the statement) become
//! artifact manifests (`artifactType`, an empty `{}` config, the document as
//! the one layer) whose `subject` is the image manifest.
//!
//! They are written as their own OCI layout, `referrers/` under the output
//! (`oci-layout`, `index.json` listing every artifact manifest with its
//! `artifactType`, `blobs/`), not into the images' `index.json`: tools that
//! predate OCI 1.1 validate every manifest of an index and refuse the
//! empty config (Debian's oci-image-tool 1.0.0~rc1: `invalid descriptor
//! MediaType "application/vnd.oci.empty.v1+json"`), and the per-image
//! layouts under `images/` must keep one image for scanners. `push` sends
//! them with their subjects.

use super::{AttestError, io_err};
use crate::image::WrittenImage;
use serde_json::{Value, json};
use std::path::Path;

/// The empty config of artifact manifests (`{}`).
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// SPDX documents.
pub const MEDIA_SPDX: &str = "application/spdx+json";
/// CycloneDX documents.
pub const MEDIA_CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// DSSE envelopes.
pub const MEDIA_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// Unsigned in-toto statements.
pub const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";

/// One artifact manifest written for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// `name:tag` of the subject image.
    pub subject: String,
    /// The artifact type.
    pub artifact_type: String,
    /// `sha256:<hex>` of the artifact manifest.
    pub digest: String,
    /// Its size.
    pub size: u64,
}

fn put_blob(dir: &Path, bytes: &[u8]) -> Result<Value, AttestError> {
    let hex = crate::digest::sha256_hex(bytes);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let path = blobs.join(&hex);
    if !path.is_file() {
        std::fs::write(&path, bytes).map_err(io_err(&path))?;
    }
    Ok(json!({"digest": format!("sha256:{hex}"), "size": bytes.len()}))
}

/// The files attached to an image, with their artifact types.
fn attachments(layout: &Path, img: &WrittenImage) -> Vec<(String, &'static str)> {
    let stem = crate::sbom::safe_name(&img.name);
    let signed = format!("attest/{stem}.provenance.dsse.json");
    let provenance = if layout.join(&signed).is_file() {
        (signed, MEDIA_DSSE)
    } else {
        (format!("attest/{stem}.provenance.json"), MEDIA_IN_TOTO)
    };
    vec![
        (format!("sbom/{stem}.spdx.json"), MEDIA_SPDX),
        (format!("sbom/{stem}.cdx.json"), MEDIA_CYCLONEDX),
        provenance,
    ]
}

/// The artifact manifest of `file` (relative to `layout`) for `img`; its
/// blobs go into `dir`.
pub fn manifest(
    layout: &Path,
    dir: &Path,
    img: &WrittenImage,
    file: &str,
    artifact_type: &str,
) -> Result<Vec<u8>, AttestError> {
    let path = layout.join(file);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let mut layer = put_blob(dir, &bytes)?;
    layer["mediaType"] = json!(artifact_type);
    let title = file.rsplit('/').next().unwrap_or(file);
    layer["annotations"] = json!({"org.opencontainers.image.title": title});
    let mut config = put_blob(dir, b"{}")?;
    config["mediaType"] = json!(MEDIA_EMPTY);
    let m = json!({
        "schemaVersion": 2,
        "mediaType": crate::image::MEDIA_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
        "subject": {"mediaType": img.manifest.media_type, "digest": img.manifest.digest, "size": img.manifest.size},
    });
    Ok(crate::json::to_canonical(&m))
}

/// The referrers layout under an output directory.
pub fn layout_dir(layout: &Path) -> std::path::PathBuf {
    layout.join("referrers")
}

/// Write every image's referrers as the layout `referrers/`.
pub fn write_layout(layout: &Path, images: &[WrittenImage]) -> Result<Vec<Referrer>, AttestError> {
    let dir = layout_dir(layout);
    let mut out = Vec::new();
    for img in images {
        for (file, artifact_type) in attachments(layout, img) {
            let bytes = manifest(layout, &dir, img, &file, artifact_type)?;
            let d = put_blob(&dir, &bytes)?;
            out.push(Referrer {
                subject: img.reference(),
                artifact_type: artifact_type.to_string(),
                digest: d["digest"].as_str().unwrap_or_default().to_string(),
                size: bytes.len() as u64,
            });
        }
    }
    let manifests: Vec<Value> = out
        .iter()
        .map(|r| {
            json!({
                "mediaType": crate::image::MEDIA_MANIFEST,
                "digest": r.digest,
                "size": r.size,
                "artifactType": r.artifact_type,
                "annotations": {"org.imgforge.subject": r.subject},
            })
        })
        .collect();
    let index =
        json!({"schemaVersion": 2, "mediaType": crate::image::MEDIA_INDEX, "manifests": manifests});
    for (name, v) in [
        ("index.json", index),
        ("oci-layout", json!({"imageLayoutVersion": "1.0.0"})),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, crate::json::to_canonical(&v)).map_err(io_err(&path))?;
    }
    Ok(out)
}
