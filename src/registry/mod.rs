//! Stage: push the images of an OCI layout to a registry (OCI distribution
//! API), digests preserved.
//!
//! The layout's bytes go up unchanged: layers are never recompressed and the
//! manifest is the stored blob, so the registry serves exactly the digests
//! `imgforge build` wrote. For each blob: a `HEAD` (a blob the repository
//! has is skipped), else a cross-repository mount when this push already put
//! it in another repository of the registry, else a monolithic upload
//! streamed from disk. A manifest whose tag already resolves to the same digest is not
//! sent again. Images are pushed in order of layer count, so the base goes
//! first and the images built on it mount its layers instead of uploading
//! them. Credentials come from the docker config (see [`auth`]); transient
//! failures are retried with backoff (see [`client`]). Each image's OCI
//! 1.1 referrers (SBOMs, provenance) follow it (see [`referrers`]), with
//! the tag-schema fallback for registries without the referrers API.

pub mod auth;
pub mod client;
pub mod layout;
pub mod referrers;
pub mod site;

use client::{Body, Client, Reply};
use layout::{BlobRef, LayoutImage};
use rayon::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use ureq::http::Method;

/// Errors of this stage.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "{path}: {reason}\nhelp: push reads the output of `imgforge build` (an OCI image layout); build first, or pass its --out directory"
    )]
    Layout { path: PathBuf, reason: String },
    #[error(
        "no image named {name:?} in the layout (it has: {available})\nhelp: --image takes an image name from the recipes, without the tag"
    )]
    NoImage { name: String, available: String },
    #[error(
        "destination {dest:?}: {reason}\nhelp: give the registry as HOST[:PORT][/NAMESPACE], e.g. 127.0.0.1:5000/team"
    )]
    Destination { dest: String, reason: String },
    #[error(
        "authentication for {registry}: {reason}\nhelp: run `docker login` for this registry, or fix its entry in the docker config (~/.docker/config.json)"
    )]
    Auth { registry: String, reason: String },
    #[error(
        "blob {digest} ({size} bytes) of {repo}: {reason}\nhelp: the other blobs are unaffected and already-pushed ones are skipped next time; rerun `imgforge push` once the registry is reachable"
    )]
    Blob {
        repo: String,
        digest: String,
        size: u64,
        reason: String,
    },
    #[error(
        "manifest {repo}:{tag}: {reason}\nhelp: the tag is written only after all of its blobs arrived; if the registry was unreachable, rerun `imgforge push` (what arrived is skipped); if it refused the manifest, it must accept OCI image manifests (Distribution 2.7 or later, or any OCI-conformant registry)"
    )]
    Manifest {
        repo: String,
        tag: String,
        reason: String,
    },
}

/// Options of `imgforge push`.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The OCI layout written by `imgforge build`.
    pub layout: PathBuf,
    /// `HOST[:PORT][/NAMESPACE]`.
    pub destination: String,
    /// Image names to push (empty: all).
    pub images: Vec<String>,
    /// Speak plain HTTP (always so for loopback hosts).
    pub plain_http: bool,
    /// Attempts after the first for a transient failure.
    pub retries: u32,
    /// Blobs uploaded at once.
    pub jobs: usize,
    /// Directory of the docker `config.json` (default: `$DOCKER_CONFIG`, `~/.docker`).
    pub docker_config: Option<PathBuf>,
}

/// What happened to one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushedImage {
    /// `host/namespace/name:tag`.
    pub reference: String,
    pub repository: String,
    pub tag: String,
    pub manifest_digest: String,
    /// Blobs sent (config and layers).
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
    /// False when the tag already pointed at this manifest.
    pub manifest_sent: bool,
    /// Referrer manifests (SBOMs, provenance) the registry did not have.
    pub referrers_sent: usize,
    /// The referrers tag-schema tag written (`sha256-<hex>`), for a
    /// registry without the referrers API.
    pub referrers_tag: Option<String>,
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushSummary {
    pub registry: String,
    pub images: Vec<PushedImage>,
}

impl PushSummary {
    pub fn uploaded(&self) -> usize {
        self.images.iter().map(|i| i.uploaded).sum()
    }
    pub fn uploaded_bytes(&self) -> u64 {
        self.images.iter().map(|i| i.uploaded_bytes).sum()
    }
    pub fn mounted(&self) -> usize {
        self.images.iter().map(|i| i.mounted).sum()
    }
    pub fn skipped(&self) -> usize {
        self.images.iter().map(|i| i.skipped).sum()
    }
    /// Machine-readable form (no times: it depends only on what was pushed
    /// and what the registry had).
    pub fn to_json(&self) -> Value {
        json!({
            "registry": self.registry,
            "images": self.images.iter().map(|i| json!({
                "reference": i.reference,
                "repository": i.repository,
                "tag": i.tag,
                "digest": i.manifest_digest,
                "pinned": format!("{}/{}@{}", self.registry, i.repository, i.manifest_digest),
                "blobs_uploaded": i.uploaded,
                "bytes_uploaded": i.uploaded_bytes,
                "blobs_mounted": i.mounted,
                "blobs_skipped": i.skipped,
                "manifest_sent": i.manifest_sent,
                "referrers_sent": i.referrers_sent,
                "referrers_tag": i.referrers_tag,
            })).collect::<Vec<_>>(),
            "blobs_uploaded": self.uploaded(),
            "bytes_uploaded": self.uploaded_bytes(),
            "blobs_mounted": self.mounted(),
            "blobs_skipped": self.skipped(),
        })
    }
}

/// The registry host and repository namespace of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub namespace: String,
}

impl Destination {
    pub fn parse(dest: &str) -> Result<Destination, PushError> {
        let err = |reason: &str| PushError::Destination {
            dest: dest.to_string(),
            reason: reason.to_string(),
        };
        let d = dest.trim_end_matches('/');
        if d.contains("://") {
            return Err(err(
                "no scheme: HTTPS is used, plain HTTP for loopback or with --plain-http",
            ));
        }
        let (host, ns) = d.split_once('/').unwrap_or((d, ""));
        if host.is_empty() || host.contains('@') {
            return Err(err("no registry host"));
        }
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if !ns.chars().all(ok) || ns.contains("//") {
            return Err(err(
                "a repository namespace has lowercase letters, digits, '.', '_', '-' and '/' only",
            ));
        }
        Ok(Destination {
            host: host.to_string(),
            namespace: ns.to_string(),
        })
    }

    /// The repository an image goes to.
    pub fn repository(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.namespace)
        }
    }

    /// Loopback registries speak plain HTTP (as docker assumes).
    pub fn is_loopback(&self) -> bool {
        let h = self
            .host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    &self.host
                }
            });
        h == "localhost" || h.starts_with("127.") || h == "[::1]"
    }
}

/// `imgforge push`: every (or each selected) image of the layout.
pub fn push(
    opts: &PushOptions,
    on_image: &(dyn Fn(&PushedImage) + Sync),
) -> Result<PushSummary, PushError> {
    let dest = Destination::parse(&opts.destination)?;
    let mut images = layout::read_images(&opts.layout)?;
    if !opts.images.is_empty() {
        for want in &opts.images {
            if !images.iter().any(|i| &i.name == want) {
                return Err(PushError::NoImage {
                    name: want.clone(),
                    available: images
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        images.retain(|i| opts.images.contains(&i.name));
    }
    // Fewest layers first: the base before the images that mount its layers.
    images.sort_by(|a, b| (a.blobs.len(), &a.name).cmp(&(b.blobs.len(), &b.name)));
    let creds = match auth::config_path(opts.docker_config.as_deref()) {
        Some(p) => auth::lookup(&p, &dest.host)?,
        None => None,
    };
    let scheme = if opts.plain_http || dest.is_loopback() {
        "http"
    } else {
        "https"
    };
    let client = Client::new(
        format!("{scheme}://{}", dest.host),
        dest.host.clone(),
        creds,
        opts.retries,
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| PushError::Destination {
            dest: opts.destination.clone(),
            reason: format!("cannot start upload threads: {e}"),
        })?;
    let known: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let mut summary = PushSummary {
        registry: dest.host.clone(),
        images: Vec::new(),
    };
    for img in &images {
        let repo = dest.repository(&img.name);
        let pushed = pool.install(|| push_image(&client, &repo, img, &known))?;
        let refs = referrers::push(&client, &repo, &opts.layout, img, &known)?;
        let pushed = PushedImage {
            reference: format!("{}/{repo}:{}", dest.host, img.tag),
            referrers_sent: refs.sent,
            referrers_tag: refs.fallback_tag,
            ..pushed
        };
        on_image(&pushed);
        summary.images.push(pushed);
    }
    summary.images.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(summary)
}

/// How one blob got to the registry.
pub(crate) enum Outcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

fn push_image(
    client: &Client,
    repo: &str,
    img: &LayoutImage,
    known: &Mutex<BTreeMap<String, String>>,
) -> Result<PushedImage, PushError> {
    let outcomes: Vec<Outcome> = img
        .blobs
        .par_iter()
        .map(|b| push_blob(client, repo, b, known))
        .collect::<Result<_, _>>()?;
    let mut p = PushedImage {
        repository: repo.to_string(),
        tag: img.tag.clone(),
        manifest_digest: img.manifest_digest.clone(),
        ..Default::default()
    };
    for o in outcomes {
        match o {
            Outcome::Skipped => p.skipped += 1,
            Outcome::Mounted => p.mounted += 1,
            Outcome::Uploaded(n) => {
                p.uploaded += 1;
                p.uploaded_bytes += n;
            }
        }
    }
    p.manifest_sent = push_manifest(client, repo, img)?;
    Ok(p)
}

pub(crate) fn scope(repo: &str, actions: &str) -> String {
    format!("repository:{repo}:{actions}")
}

pub(crate) fn push_blob(
    client: &Client,
    repo: &str,
    b: &BlobRef,
    known: &Mutex<BTreeMap<String, String>>,
) -> Result<Outcome, PushError> {
    let fail = |reason: String| PushError::Blob {
        repo: repo.to_string(),
        digest: b.digest.clone(),
        size: b.size,
        reason,
    };
    let rw = vec![scope(repo, "pull,push")];
    let url = client.url(&format!("/v2/{repo}/blobs/{}", b.digest));
    let r = client
        .send(Method::HEAD, &url, &[], &Body::Empty, &rw)
        .map_err(|f| fail(f.0))?;
    if r.status == 200 {
        remember(known, b, repo);
        return Ok(Outcome::Skipped);
    }
    if r.status != 404 {
        return Err(fail(status_reason("HEAD", &r)));
    }
    let from = known
        .lock()
        .expect("known blobs")
        .get(&b.digest)
        .filter(|r| r.as_str() != repo)
        .cloned();
    let session = if let Some(from) = from {
        // Cross-repository mount: 201 = done, 202 = an upload session instead.
        let url = client.url(&format!(
            "/v2/{repo}/blobs/uploads/?mount={}&from={}",
            b.digest,
            client::query_escape(&from)
        ));
        let scopes = vec![rw[0].clone(), scope(&from, "pull")];
        let r = client
            .send(Method::POST, &url, &[], &Body::Empty, &scopes)
            .map_err(|f| fail(f.0))?;
        match r.status {
            201 => {
                remember(known, b, repo);
                return Ok(Outcome::Mounted);
            }
            202 => location(&r).map_err(fail)?,
            _ => return Err(fail(status_reason("mount", &r))),
        }
    } else {
        let url = client.url(&format!("/v2/{repo}/blobs/uploads/"));
        let r = client
            .send(Method::POST, &url, &[], &Body::Empty, &rw)
            .map_err(|f| fail(f.0))?;
        if r.status != 202 {
            return Err(fail(status_reason("starting an upload", &r)));
        }
        location(&r).map_err(fail)?
    };
    let meta = std::fs::metadata(&b.path)
        .map_err(|e| fail(format!("cannot read {}: {e}", b.path.display())))?;
    if meta.len() != b.size {
        return Err(fail(format!(
            "{} has {} bytes, the manifest says {}",
            b.path.display(),
            meta.len(),
            b.size
        )));
    }
    let sep = if session.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}digest={}", client.url(&session), b.digest);
    let body = Body::File {
        path: b.path.clone(),
        size: b.size,
    };
    let headers = [("Content-Type", "application/octet-stream")];
    let r = client
        .send(Method::PUT, &url, &headers, &body, &rw)
        .map_err(|f| fail(f.0))?;
    if r.status == 404 && arrived(client, repo, b, &rw) {
        // The session is gone because an earlier try of this PUT completed
        // it and its answer was lost (the client retried): the blob is there.
        remember(known, b, repo);
        return Ok(Outcome::Uploaded(b.size));
    }
    if r.status != 201 {
        return Err(fail(status_reason("upload", &r)));
    }
    remember(known, b, repo);
    Ok(Outcome::Uploaded(b.size))
}

/// Does `repo` now hold blob `b`? (A failed check is a no.)
fn arrived(client: &Client, repo: &str, b: &BlobRef, rw: &[String]) -> bool {
    let url = client.url(&format!("/v2/{repo}/blobs/{}", b.digest));
    client
        .send(Method::HEAD, &url, &[], &Body::Empty, rw)
        .is_ok_and(|r| r.status == 200)
}

fn remember(known: &Mutex<BTreeMap<String, String>>, b: &BlobRef, repo: &str) {
    known
        .lock()
        .expect("known blobs")
        .entry(b.digest.clone())
        .or_insert_with(|| repo.to_string());
}

fn location(r: &Reply) -> Result<String, String> {
    r.location
        .clone()
        .ok_or_else(|| format!("the registry answered {} without a Location", r.status))
}

pub(crate) fn status_reason(what: &str, r: &Reply) -> String {
    let body = r.body.trim();
    let body = if body.len() > 400 { &body[..400] } else { body };
    format!("{what} answered HTTP {} {body}", r.status)
}

/// Send the manifest unless the tag already points at it; checks the
/// digest the registry computed.
fn push_manifest(client: &Client, repo: &str, img: &LayoutImage) -> Result<bool, PushError> {
    let fail = |reason: String| PushError::Manifest {
        repo: repo.to_string(),
        tag: img.tag.clone(),
        reason,
    };
    let rw = vec![scope(repo, "pull,push")];
    let url = client.url(&format!("/v2/{repo}/manifests/{}", img.tag));
    let accept = [("Accept", img.media_type.as_str())];
    let r = client
        .send(Method::HEAD, &url, &accept, &Body::Empty, &rw)
        .map_err(|f| fail(f.0))?;
    if r.status == 200 && r.digest.as_deref() == Some(img.manifest_digest.as_str()) {
        return Ok(false);
    }
    let headers = [("Content-Type", img.media_type.as_str())];
    let r = client
        .send(
            Method::PUT,
            &url,
            &headers,
            &Body::Bytes(&img.manifest),
            &rw,
        )
        .map_err(|f| fail(f.0))?;
    if r.status != 201 {
        return Err(fail(status_reason("PUT", &r)));
    }
    if let Some(d) = &r.digest {
        if d != &img.manifest_digest {
            return Err(fail(format!(
                "the registry stored it as {d}, not {}: it rewrote the manifest",
                img.manifest_digest
            )));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("127.0.0.1:5000/team/x").unwrap();
        assert_eq!(d.host, "127.0.0.1:5000");
        assert_eq!(d.repository("hello"), "team/x/hello");
        assert!(d.is_loopback());
        let d = Destination::parse("localhost:5000").unwrap();
        assert_eq!(d.repository("hello"), "hello");
        assert!(d.is_loopback());
        assert!(!Destination::parse("reg.example").unwrap().is_loopback());
        assert!(Destination::parse("https://reg.example").is_err());
        assert!(Destination::parse("reg.example/Team").is_err());
        assert!(Destination::parse("/team").is_err());
    }
}
