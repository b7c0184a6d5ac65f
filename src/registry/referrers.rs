//! Pushing an image's OCI 1.1 referrers (the artifact manifests `build`
//! writes in the output's `referrers/` layout with a `subject`: SBOMs,
//! provenance).
//!
//! Each artifact's blobs go up as the image's do, then its manifest by
//! digest. A registry with the referrers API (`GET
//! /v2/<repo>/referrers/<digest>` answers 200) indexes them itself; for
//! one without it (Distribution 2.8 answers 404) the referrers tag schema
//! is kept: the tag `sha256-<hex of the subject>` holds an image index of
//! the subject's referrers, merged with what the tag already lists and sent
//! only when it changed.

use super::client::{Body, Client};
use super::layout::{BlobRef, LayoutImage, blob_path};
use super::{Outcome, PushError, push_blob, scope, status_reason};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use ureq::http::Method;

/// One referrer in the layout.
#[derive(Debug, Clone)]
pub struct LayoutReferrer {
    /// The index descriptor (mediaType, digest, size, artifactType).
    pub descriptor: Value,
    /// The manifest bytes as stored.
    pub manifest: Vec<u8>,
    /// Its config and layers.
    pub blobs: Vec<BlobRef>,
}

fn bad(path: &Path, reason: String) -> PushError {
    PushError::Layout {
        path: path.to_path_buf(),
        reason,
    }
}

/// The referrers of `subject` (`sha256:<hex>`) that the output's
/// `referrers/` layout lists (none when there is no such layout).
pub fn read(layout: &Path, subject: &str) -> Result<Vec<LayoutReferrer>, PushError> {
    let layout = &layout.join("referrers");
    let index_path = layout.join("index.json");
    if !index_path.is_file() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(&index_path).map_err(|e| bad(&index_path, e.to_string()))?;
    let index: Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(&index_path, e.to_string()))?;
    let mut out = Vec::new();
    for d in index["manifests"].as_array().into_iter().flatten() {
        if d["artifactType"].as_str().is_none() {
            continue;
        }
        let digest = d["digest"].as_str().unwrap_or_default();
        let path = blob_path(layout, digest)?;
        let manifest = std::fs::read(&path).map_err(|e| bad(&path, e.to_string()))?;
        let m: Value = serde_json::from_slice(&manifest).map_err(|e| bad(&path, e.to_string()))?;
        if m["subject"]["digest"].as_str() != Some(subject) {
            continue;
        }
        let mut blobs = Vec::new();
        for b in std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten()) {
            let digest = b["digest"].as_str().unwrap_or_default().to_string();
            blobs.push(BlobRef {
                path: blob_path(layout, &digest)?,
                size: b["size"].as_u64().unwrap_or_default(),
                digest,
            });
        }
        let mut descriptor = d.clone();
        if let Some(o) = descriptor.as_object_mut() {
            o.remove("annotations");
        }
        out.push(LayoutReferrer {
            descriptor,
            manifest,
            blobs,
        });
    }
    Ok(out)
}

/// What pushing the referrers did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Artifact manifests the registry did not have.
    pub sent: usize,
    /// Whether the fallback tag was written (the registry has no referrers API).
    pub fallback_tag: Option<String>,
}

fn put_manifest(
    client: &Client,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<bool, PushError> {
    let fail = |reason: String| PushError::Manifest {
        repo: repo.to_string(),
        tag: reference.to_string(),
        reason,
    };
    let rw = vec![scope(repo, "pull,push")];
    let url = client.url(&format!("/v2/{repo}/manifests/{reference}"));
    let want = format!("sha256:{}", crate::digest::sha256_hex(bytes));
    let r = client
        .send(
            Method::HEAD,
            &url,
            &[("Accept", media_type)],
            &Body::Empty,
            &rw,
        )
        .map_err(|f| fail(f.0))?;
    if r.status == 200 && r.digest.as_deref() == Some(want.as_str()) {
        return Ok(false);
    }
    let r = client
        .send(
            Method::PUT,
            &url,
            &[("Content-Type", media_type)],
            &Body::Bytes(bytes),
            &rw,
        )
        .map_err(|f| fail(f.0))?;
    if r.status != 201 {
        return Err(fail(status_reason("PUT", &r)));
    }
    Ok(true)
}

/// Push the layout's referrers of `img` to `repo`.
pub fn push(
    client: &Client,
    repo: &str,
    layout: &Path,
    img: &LayoutImage,
    known: &Mutex<BTreeMap<String, String>>,
) -> Result<Pushed, PushError> {
    let refs = read(layout, &img.manifest_digest)?;
    let mut done = Pushed::default();
    if refs.is_empty() {
        return Ok(done);
    }
    for r in &refs {
        for b in &r.blobs {
            let _: Outcome = push_blob(client, repo, b, known)?;
        }
        let digest = r.descriptor["digest"].as_str().unwrap_or_default();
        if put_manifest(
            client,
            repo,
            digest,
            crate::image::MEDIA_MANIFEST,
            &r.manifest,
        )? {
            done.sent += 1;
        }
    }
    let rw = vec![scope(repo, "pull,push")];
    let api = client.url(&format!("/v2/{repo}/referrers/{}", img.manifest_digest));
    let fail = |reason: String| PushError::Manifest {
        repo: repo.to_string(),
        tag: img.tag.clone(),
        reason,
    };
    let r = client
        .send(
            Method::GET,
            &api,
            &[("Accept", crate::image::MEDIA_INDEX)],
            &Body::Empty,
            &rw,
        )
        .map_err(|f| fail(f.0))?;
    if r.status == 200 {
        return Ok(done);
    }
    let tag = fallback_tag(&img.manifest_digest);
    let index = merged_index(client, repo, &tag, &refs)?;
    put_manifest(client, repo, &tag, crate::image::MEDIA_INDEX, &index)?;
    done.fallback_tag = Some(tag);
    Ok(done)
}

/// The referrers tag schema's tag for a subject digest (`sha256-<hex>`).
pub fn fallback_tag(subject: &str) -> String {
    subject.replacen(':', "-", 1)
}

/// The fallback index: what the tag lists now plus `refs`, by digest.
fn merged_index(
    client: &Client,
    repo: &str,
    tag: &str,
    refs: &[LayoutReferrer],
) -> Result<Vec<u8>, PushError> {
    let rw = vec![scope(repo, "pull,push")];
    let url = client.url(&format!("/v2/{repo}/manifests/{tag}"));
    let r = client
        .send(
            Method::GET,
            &url,
            &[("Accept", crate::image::MEDIA_INDEX)],
            &Body::Empty,
            &rw,
        )
        .map_err(|f| PushError::Manifest {
            repo: repo.to_string(),
            tag: tag.to_string(),
            reason: f.0,
        })?;
    let mut by_digest: BTreeMap<String, Value> = BTreeMap::new();
    if r.status == 200 {
        let existing: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        for d in existing["manifests"].as_array().into_iter().flatten() {
            if let Some(k) = d["digest"].as_str() {
                by_digest.insert(k.to_string(), d.clone());
            }
        }
    }
    for r in refs {
        let k = r.descriptor["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        by_digest.insert(k, r.descriptor.clone());
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::image::MEDIA_INDEX,
        "manifests": by_digest.into_values().collect::<Vec<_>>(),
    });
    Ok(crate::json::to_canonical(&index))
}
