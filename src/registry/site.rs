//! The registry requests a site install and a site inventory make, on the
//! same [`Client`] as `push` (authentication from the docker config,
//! retries, plain HTTP on loopback): connect, `HEAD` a blob, mount one
//! from another repository, upload one from a byte range of a file, put a
//! manifest by digest or tag, and list repositories, tags and manifests.

use super::client::{Body, Client, Reply, query_escape};
use super::{Destination, PushError, auth, scope, status_reason};
use std::path::PathBuf;
use ureq::http::Method;

/// How to reach a registry (the options `push` takes).
#[derive(Debug, Clone)]
pub struct Connect {
    /// `HOST[:PORT][/NAMESPACE]`.
    pub destination: String,
    pub plain_http: bool,
    pub retries: u32,
    pub docker_config: Option<PathBuf>,
}

/// The destination and a client for it.
pub fn connect(c: &Connect) -> Result<(Destination, Client), PushError> {
    let dest = Destination::parse(&c.destination)?;
    let creds = match auth::config_path(c.docker_config.as_deref()) {
        Some(p) => auth::lookup(&p, &dest.host)?,
        None => None,
    };
    let scheme = if c.plain_http || dest.is_loopback() {
        "http"
    } else {
        "https"
    };
    let client = Client::new(
        format!("{scheme}://{}", dest.host),
        dest.host.clone(),
        creds,
        c.retries,
    );
    Ok((dest, client))
}

fn blob_err(repo: &str, digest: &str, size: u64) -> impl Fn(String) -> PushError {
    let (repo, digest) = (repo.to_string(), digest.to_string());
    move |reason| PushError::Blob {
        repo: repo.clone(),
        digest: digest.clone(),
        size,
        reason,
    }
}

/// Does `repo` hold blob `digest`?
pub fn has_blob(client: &Client, repo: &str, digest: &str) -> Result<bool, PushError> {
    let url = client.url(&format!("/v2/{repo}/blobs/{digest}"));
    let r = client
        .send(
            Method::HEAD,
            &url,
            &[],
            &Body::Empty,
            &[scope(repo, "pull")],
        )
        .map_err(|f| blob_err(repo, digest, 0)(f.0))?;
    match r.status {
        200 => Ok(true),
        404 => Ok(false),
        _ => Err(blob_err(repo, digest, 0)(status_reason("HEAD", &r))),
    }
}

/// Mount `digest` into `repo` from `from`: `Ok(true)` when mounted, `Ok(false)`
/// when the registry opened an upload session instead (no mount support,
/// or `from` lacks it); the session is left to expire.
pub fn mount(client: &Client, repo: &str, from: &str, digest: &str) -> Result<bool, PushError> {
    let fail = blob_err(repo, digest, 0);
    let url = client.url(&format!(
        "/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
        query_escape(from)
    ));
    let scopes = [scope(repo, "pull,push"), scope(from, "pull")];
    let r = client
        .send(Method::POST, &url, &[], &Body::Empty, &scopes)
        .map_err(|f| fail(f.0))?;
    match r.status {
        201 => Ok(true),
        202 => Ok(false),
        _ => Err(fail(status_reason("mount", &r))),
    }
}

/// Upload blob `digest` into `repo` from `body` (monolithic: POST, then
/// PUT with the digest, which the registry checks).
pub fn upload(
    client: &Client,
    repo: &str,
    digest: &str,
    size: u64,
    body: &Body,
) -> Result<(), PushError> {
    let fail = blob_err(repo, digest, size);
    let rw = [scope(repo, "pull,push")];
    let url = client.url(&format!("/v2/{repo}/blobs/uploads/"));
    let r = client
        .send(Method::POST, &url, &[], &Body::Empty, &rw)
        .map_err(|f| fail(f.0))?;
    if r.status != 202 {
        return Err(fail(status_reason("starting an upload", &r)));
    }
    let session = r
        .location
        .clone()
        .ok_or_else(|| fail("the registry answered 202 without a Location".into()))?;
    let sep = if session.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}digest={digest}", client.url(&session));
    let headers = [("Content-Type", "application/octet-stream")];
    let r = client
        .send(Method::PUT, &url, &headers, body, &rw)
        .map_err(|f| fail(f.0))?;
    // A 404 after a retried PUT: an earlier try completed the session and
    // its answer was lost; the blob is there if HEAD says so.
    if r.status == 201 || (r.status == 404 && has_blob(client, repo, digest)?) {
        return Ok(());
    }
    Err(fail(status_reason("upload", &r)))
}

/// PUT `bytes` as the manifest `reference` (a digest or a tag) of `repo`;
/// refuses a registry that stores it under another digest.
pub fn put_manifest(
    client: &Client,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    digest: &str,
) -> Result<(), PushError> {
    let fail = |reason: String| PushError::Manifest {
        repo: repo.to_string(),
        tag: reference.to_string(),
        reason,
    };
    let url = client.url(&format!("/v2/{repo}/manifests/{reference}"));
    let r = client
        .send(
            Method::PUT,
            &url,
            &[("Content-Type", media_type)],
            &Body::Bytes(bytes),
            &[scope(repo, "pull,push")],
        )
        .map_err(|f| fail(f.0))?;
    if r.status != 201 {
        return Err(fail(status_reason("PUT", &r)));
    }
    match &r.digest {
        Some(d) if d != digest => Err(fail(format!(
            "the registry stored it as {d}, not {digest}: it rewrote the manifest"
        ))),
        _ => Ok(()),
    }
}

/// The digest `reference` (a tag) of `repo` resolves to, if any.
pub fn resolve(
    client: &Client,
    repo: &str,
    reference: &str,
    accept: &str,
) -> Result<Option<String>, PushError> {
    let r = get(
        client,
        repo,
        &format!("manifests/{reference}"),
        accept,
        true,
    )?;
    Ok(if r.status == 200 { r.digest } else { None })
}

/// The manifest `reference` of `repo` (its text and digest), if any.
pub fn manifest(
    client: &Client,
    repo: &str,
    reference: &str,
) -> Result<Option<(String, Option<String>)>, PushError> {
    let accept = [
        crate::image::MEDIA_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
    .join(", ");
    let r = get(
        client,
        repo,
        &format!("manifests/{reference}"),
        &accept,
        false,
    )?;
    Ok((r.status == 200).then_some((r.body, r.digest)))
}

fn get(
    client: &Client,
    repo: &str,
    what: &str,
    accept: &str,
    head: bool,
) -> Result<Reply, PushError> {
    let url = client.url(&format!("/v2/{repo}/{what}"));
    let method = if head { Method::HEAD } else { Method::GET };
    let r = client
        .send(
            method,
            &url,
            &[("Accept", accept)],
            &Body::Empty,
            &[scope(repo, "pull")],
        )
        .map_err(|f| list_err(&url, f.0))?;
    match r.status {
        200 | 404 => Ok(r),
        _ => Err(list_err(&url, status_reason("GET", &r))),
    }
}

fn list_err(what: &str, reason: String) -> PushError {
    PushError::Destination {
        dest: what.to_string(),
        reason,
    }
}

/// A page size small enough for the client's 64 KiB answer limit.
const PAGE: usize = 200;

/// Every repository of the registry under `namespace` (`/v2/_catalog`,
/// paged), sorted.
pub fn repositories(client: &Client, namespace: &str) -> Result<Vec<String>, PushError> {
    let prefix = if namespace.is_empty() {
        String::new()
    } else {
        format!("{namespace}/")
    };
    let mut all = Vec::new();
    let mut last = String::new();
    loop {
        let url = client.url(&format!(
            "/v2/_catalog?n={PAGE}&last={}",
            query_escape(&last)
        ));
        let r = client
            .send(
                Method::GET,
                &url,
                &[],
                &Body::Empty,
                &["registry:catalog:*".to_string()],
            )
            .map_err(|f| list_err(&url, f.0))?;
        if r.status != 200 {
            return Err(list_err(&url, status_reason("GET", &r)));
        }
        let page = names(&r.body, "repositories").map_err(|e| list_err(&url, e))?;
        let n = page.len();
        last = page.last().cloned().unwrap_or_default();
        all.extend(page.into_iter().filter(|p| p.starts_with(&prefix)));
        if n < PAGE {
            break;
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

/// Every tag of `repo` (`/v2/<repo>/tags/list`, paged), sorted.
pub fn tags(client: &Client, repo: &str) -> Result<Vec<String>, PushError> {
    let mut all = Vec::new();
    let mut last = String::new();
    loop {
        let what = format!("tags/list?n={PAGE}&last={}", query_escape(&last));
        let r = get(client, repo, &what, "application/json", false)?;
        if r.status == 404 {
            break;
        }
        let page = names(&r.body, "tags").map_err(|e| list_err(repo, e))?;
        let n = page.len();
        last = page.last().cloned().unwrap_or_default();
        all.extend(page);
        if n < PAGE {
            break;
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

fn names(body: &str, field: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not a JSON answer: {e}"))?;
    Ok(v[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect())
}
