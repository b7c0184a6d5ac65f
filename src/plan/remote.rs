//! The remote step cache: step results shared through any OCI registry
//! (`--cache-from`, `--cache-to`, the base recipe's `[cache]`).
//!
//! Each step result the local [`StepStore`] keeps (a [`StepRecord`]: its
//! record, the blobs it names, its tree) is one OCI artifact in the
//! repository, tagged `<kind>-<key>`:
//!
//! ```text
//! manifest (application/vnd.oci.image.manifest.v1+json)
//!   artifactType  application/vnd.imgforge.step.v1
//!   config        application/vnd.imgforge.step.config.v1+json
//!                 {"format":1,"imgforge":VERSION,"kind":K,"key":KEY,
//!                  "record":{...},"files":[{"name","digest","size"}...]}
//!   layers        one per file, application/vnd.imgforge.step.file.v1,
//!                 titled blobs/sha256/<hex> or tree/<path>
//! ```
//!
//! Fetching (when the local store misses a key): the manifest, then the
//! config; both must be what they claim (artifact type, the wanted kind and
//! key, every file listed alike in both), and every file is streamed into
//! the store's scratch while hashed, and must have the digest and size both
//! the manifest and the record give. A blob is adopted into the store once
//! it checks out (it is named by its digest: a good blob stays good
//! whatever else fails), a tree is moved in whole, and the record is
//! written last, so only a complete, checked step has a record. Anything
//! else is refused with a warning naming the registry, the step and the
//! file: the step runs locally. Uploading (after a step ran, or was
//! reused, with `--cache-to`), on one thread beside the build: every blob
//! the registry lacks, then the config, then the manifest, so a tag never
//! names a missing blob.
//!
//! A registry that cannot be reached when the build starts costs one
//! warning and the build runs without it; one that stops answering later
//! is warned about once and not asked again. Requests are bounded by short
//! timeouts. Keys already name everything that decides a step's output
//! (see [`super::key`]), so what is fetched is what the build would make:
//! the outputs are the same bytes with or without the cache.

use super::exec::Ctx;
use super::store::{BlobCheck, StepRecord, StepStore};
use crate::digest::HashWriter;
use crate::options::RemoteCacheOptions;
use crate::recipe::CacheTable;
use crate::registry::client::{Body, Client, Failure, Timeouts};
use crate::ui::Status;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use ureq::http::Method;

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.imgforge.step.v1";
/// The config blob's media type: the step's record and file list.
pub const CONFIG_TYPE: &str = "application/vnd.imgforge.step.config.v1+json";
/// Each file's media type.
pub const FILE_TYPE: &str = "application/vnd.imgforge.step.file.v1";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const TITLE: &str = "org.opencontainers.image.title";
/// The config's `format`.
pub const FORMAT: u32 = 1;
const MAX_MANIFEST: u64 = 4 << 20;
const MAX_CONFIG: u64 = 64 << 20;

/// What went wrong with a remote cache; shown as a warning (the build goes
/// on without that entry, or without that registry).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "remote cache {registry}: cannot reach the registry: {reason}; this build runs without it\nhelp: check the address and that the registry is up (credentials come from the docker config); the outputs are the same without the cache"
    )]
    Unreachable { registry: String, reason: String },
    #[error(
        "remote cache {registry}: {kind} step {key}: {what}: {reason}; not used, the step runs locally\nhelp: the registry served something other than what this step stored; if it persists, delete the tag {kind}-{key} from the repository"
    )]
    Refused {
        registry: String,
        kind: String,
        key: String,
        what: String,
        reason: String,
    },
    #[error(
        "remote cache {registry}: cannot upload {kind} step {key}: {reason}; this build uploads nothing more\nhelp: check that the docker config's credentials may push to the repository; the build itself is unaffected"
    )]
    Upload {
        registry: String,
        kind: String,
        key: String,
        reason: String,
    },
}

/// One file of a step, as the config lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// `blobs/sha256/<hex>` or `tree/<relative path>`.
    pub name: String,
    pub digest: String,
    pub size: u64,
}

/// The config blob of a step artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDoc {
    pub format: u32,
    pub imgforge: String,
    pub kind: String,
    pub key: String,
    /// The step's record, as the local store keeps it.
    pub record: Value,
    pub files: Vec<FileEntry>,
}

/// A descriptor of a step manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: String,
    pub size: u64,
    /// The file's name (layers only).
    pub title: Option<String>,
}

/// A parsed step manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepManifest {
    pub config: Descriptor,
    pub files: Vec<Descriptor>,
}

/// The tag of step `kind`/`key`: `<kind>-<key>` (at most 128 of
/// `[A-Za-z0-9_.-]`, as registries require).
pub fn tag(kind: &str, key: &str) -> String {
    let t: String = format!("{kind}-{key}")
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || "_.-".contains(c) {
            true => c,
            false => '_',
        })
        .collect();
    t.chars().take(128).collect()
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(crate::digest::is_sha256_hex)
}

fn descriptor(v: &Value, media_type: &str, what: &str) -> Result<Descriptor, String> {
    if v["mediaType"].as_str() != Some(media_type) {
        return Err(format!("{what}: media type is not {media_type}"));
    }
    let digest = v["digest"].as_str().unwrap_or_default();
    if !valid_digest(digest) {
        return Err(format!("{what}: {digest:?} is not a sha256 digest"));
    }
    let size = v["size"]
        .as_u64()
        .ok_or_else(|| format!("{what}: no size"))?;
    Ok(Descriptor {
        digest: digest.to_string(),
        size,
        title: v["annotations"][TITLE].as_str().map(str::to_string),
    })
}

/// Read a step manifest (untrusted bytes from a registry).
pub fn parse_manifest(bytes: &[u8]) -> Result<StepManifest, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if v["schemaVersion"].as_u64() != Some(2) {
        return Err("not a schema 2 manifest".into());
    }
    if v.get("mediaType").is_some() && v["mediaType"].as_str() != Some(MANIFEST_TYPE) {
        return Err(format!("media type is not {MANIFEST_TYPE}"));
    }
    if v["artifactType"].as_str() != Some(ARTIFACT_TYPE) {
        return Err(format!(
            "artifact type {} is not {ARTIFACT_TYPE}",
            v["artifactType"]
        ));
    }
    let config = descriptor(&v["config"], CONFIG_TYPE, "config")?;
    let layers = v["layers"].as_array().ok_or("no layers")?;
    let files = layers
        .iter()
        .enumerate()
        .map(|(i, l)| descriptor(l, FILE_TYPE, &format!("file {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StepManifest { config, files })
}

/// Whether `name` is a file name a step may have: its blob, named by its
/// digest, or a relative path in its tree (no `.`, `..` or empty part).
fn valid_name(name: &str, digest: &str) -> bool {
    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        return digest.strip_prefix("sha256:") == Some(hex);
    }
    let Some(rel) = name.strip_prefix("tree/") else {
        return false;
    };
    name.len() <= 4096
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// Read a step's config (untrusted bytes) for step `kind`/`key`, against
/// its manifest: the same files, in the same order, with the same digests
/// and sizes, each name valid and given once.
pub fn parse_doc(bytes: &[u8], m: &StepManifest, kind: &str, key: &str) -> Result<StepDoc, String> {
    let doc: StepDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not a step record: {e}"))?;
    if doc.format != FORMAT {
        return Err(format!("record format {} is not {FORMAT}", doc.format));
    }
    if doc.kind != kind || doc.key != key {
        return Err(format!(
            "it is the record of {} step {}, not of this one",
            doc.kind, doc.key
        ));
    }
    if doc.files.len() != m.files.len() {
        return Err("the record and the manifest list different files".into());
    }
    let mut seen = BTreeSet::new();
    for (f, d) in doc.files.iter().zip(&m.files) {
        if f.digest != d.digest || f.size != d.size || d.title.as_deref() != Some(&f.name) {
            return Err(format!(
                "file {}: the record and the manifest differ",
                f.name
            ));
        }
        if !valid_name(&f.name, &f.digest) || !seen.insert(f.name.as_str()) {
            return Err(format!("file {:?}: not a valid name", f.name));
        }
    }
    Ok(doc)
}

/// The name a step's blob has in its artifact.
fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// Read the record a step's config carries, checking that every file it
/// names is in the artifact (and that a tree step has tree files only).
pub fn record_of<T: StepRecord>(doc: &StepDoc) -> Result<T, String> {
    let rec: T = serde_json::from_value(doc.record.clone())
        .map_err(|e| format!("not a {} record: {e}", T::KIND))?;
    let names: BTreeSet<&str> = doc.files.iter().map(|f| f.name.as_str()).collect();
    for b in rec.blobs() {
        if !names.contains(blob_name(&b).as_str()) {
            return Err(format!(
                "the record names blob {b}, which the artifact lacks"
            ));
        }
    }
    let trees = doc.files.iter().any(|f| f.name.starts_with("tree/"));
    if trees != T::TREE && !(T::TREE && doc.files.is_empty()) {
        return Err("its files are not what this kind of step stores".into());
    }
    Ok(rec)
}

/// One registry repository used as a remote cache.
pub struct Remote {
    client: Client,
    /// `host/repository`, for messages.
    name: String,
    repo: String,
    read: bool,
    write: bool,
    /// Stopped answering: not asked again.
    down: AtomicBool,
    /// An upload failed: nothing more is uploaded.
    no_upload: AtomicBool,
    fetched: AtomicUsize,
    uploaded: AtomicUsize,
    st: Status,
}

/// Why a fetch did not give a result.
enum Miss {
    /// Not there.
    Absent,
    /// Not what it should be: why (the caller names the step and file).
    Bad(String),
    /// There, but refused (a warning).
    Refused(RemoteError),
    /// The registry stopped answering.
    Down(String),
}

impl Remote {
    /// Connect to `reference` (`REGISTRY/REPO`): its credentials from the
    /// docker config, and one request to see that it answers (`None`, with
    /// the one warning, when it does not).
    fn connect(reference: &str, read: bool, write: bool, st: Status) -> Option<Remote> {
        let (host, repo) = reference.split_once('/')?;
        let unreachable = |reason: String| {
            let e = RemoteError::Unreachable {
                registry: reference.to_string(),
                reason,
            };
            st.say("Warning", e);
        };
        let creds = match crate::registry::auth::config_path(None) {
            Some(p) => crate::registry::auth::lookup(&p, host).unwrap_or_else(|e| {
                st.say("Warning", format!("remote cache {reference}: {e}"));
                None
            }),
            None => None,
        };
        let dest = crate::registry::Destination {
            host: host.to_string(),
            namespace: repo.to_string(),
        };
        let scheme = if dest.is_loopback() { "http" } else { "https" };
        let t = Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(30),
            read: Some(Duration::from_secs(30)),
        };
        let client = Client::with_timeouts(format!("{scheme}://{host}"), host.into(), creds, 1, t);
        let r = Remote {
            client,
            name: reference.to_string(),
            repo: repo.to_string(),
            read,
            write,
            down: AtomicBool::new(false),
            no_upload: AtomicBool::new(false),
            fetched: AtomicUsize::new(0),
            uploaded: AtomicUsize::new(0),
            st,
        };
        match r.client.send(
            Method::GET,
            &r.client.url("/v2/"),
            &[],
            &Body::Empty,
            &r.scopes(),
        ) {
            Ok(a) if a.status < 500 => Some(r),
            Ok(a) => {
                unreachable(format!("GET /v2/ answered HTTP {}", a.status));
                None
            }
            Err(Failure(e)) => {
                unreachable(e);
                None
            }
        }
    }

    fn scopes(&self) -> Vec<String> {
        let actions = if self.write { "pull,push" } else { "pull" };
        vec![crate::registry::scope(&self.repo, actions)]
    }

    /// Stop asking this registry, with one warning.
    fn went_down(&self, reason: String) {
        if !self.down.swap(true, Ordering::SeqCst) {
            let e = RemoteError::Unreachable {
                registry: self.name.clone(),
                reason: format!("it stopped answering ({reason})"),
            };
            self.st.say("Warning", e);
        }
    }

    fn refused(&self, kind: &str, key: &str, what: &str, reason: String) -> Miss {
        Miss::Refused(RemoteError::Refused {
            registry: self.name.clone(),
            kind: kind.to_string(),
            key: key.to_string(),
            what: what.to_string(),
            reason,
        })
    }

    /// A [`Miss::Bad`] (or a missing file) about `what` of step `kind`/`key`
    /// refused with a warning; other misses unchanged.
    fn about(&self, m: Miss, kind: &str, key: &str, what: &str) -> Miss {
        match m {
            Miss::Bad(reason) => self.refused(kind, key, what, reason),
            Miss::Absent => self.refused(kind, key, what, "the registry does not have it".into()),
            other => other,
        }
    }

    /// GET `path` of this repository into `sink` (at most `max` bytes):
    /// `Ok(false)` on a 404.
    fn get(
        &self,
        path: &str,
        accept: &str,
        sink: &mut dyn std::io::Write,
        max: u64,
    ) -> Result<bool, Miss> {
        let url = self.client.url(&format!("/v2/{}/{path}", self.repo));
        let r = self
            .client
            .download(&url, &[("Accept", accept)], &self.scopes(), sink, max)
            .map_err(|f| Miss::Down(f.0))?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            s if s >= 500 || s == 429 => Err(Miss::Down(format!("GET {path} answered HTTP {s}"))),
            s => Err(Miss::Bad(format!("GET {path} answered HTTP {s}"))),
        }
    }

    /// Step `key` of kind `T` from the registry, into `store`.
    fn fetch<T: StepRecord>(&self, store: &StepStore, key: &str) -> Result<T, Miss> {
        let kind = T::KIND;
        let mut bytes = Vec::new();
        let path = format!("manifests/{}", tag(kind, key));
        let found = self.get(&path, MANIFEST_TYPE, &mut bytes, MAX_MANIFEST);
        if !found.map_err(|m| self.about(m, kind, key, "manifest"))? {
            return Err(Miss::Absent);
        }
        let m = parse_manifest(&bytes).map_err(|e| self.refused(kind, key, "manifest", e))?;
        let what = format!("record {}", m.config.digest);
        let doc = self
            .fetch_doc(&m, kind, key)
            .map_err(|e| self.about(e, kind, key, &what))?;
        let rec: T = record_of(&doc).map_err(|e| self.refused(kind, key, &what, e))?;
        let local =
            |e: super::store::StoreError| self.refused(kind, key, "the local store", e.to_string());
        let staged = match T::TREE {
            true => Some(store.stage_dir().map_err(local)?),
            false => None,
        };
        for f in &doc.files {
            let what = format!("blob {} ({})", f.digest, f.name);
            self.fetch_file(store, staged.as_ref().map(|s| s.path()), f)
                .map_err(|e| self.about(e, kind, key, &what))?;
        }
        if let Some(s) = staged {
            store.adopt_tree(s, key).map_err(local)?;
        }
        store.put(kind, key, &rec).map_err(local)?;
        if T::COUNTED {
            self.fetched.fetch_add(1, Ordering::SeqCst);
        }
        Ok(rec)
    }

    /// The config of manifest `m`, hashed as it arrives, read and checked.
    fn fetch_doc(&self, m: &StepManifest, kind: &str, key: &str) -> Result<StepDoc, Miss> {
        let mut cfg = HashWriter::new(Vec::new());
        let path = format!("blobs/{}", m.config.digest);
        if !self.get(&path, CONFIG_TYPE, &mut cfg, m.config.size.min(MAX_CONFIG))? {
            return Err(Miss::Absent);
        }
        let (cfg, hex, size) = cfg.finish();
        check_bytes(&m.config, &hex, size).map_err(Miss::Bad)?;
        parse_doc(&cfg, m, kind, key).map_err(Miss::Bad)
    }

    /// One file of a step: streamed to the store's scratch while hashed,
    /// then put in place (a blob the store already holds, checked, is not
    /// fetched again).
    fn fetch_file(
        &self,
        store: &StepStore,
        tree: Option<&Path>,
        f: &FileEntry,
    ) -> Result<(), Miss> {
        let refuse = Miss::Bad;
        let rel = f.name.strip_prefix("tree/");
        if rel.is_none()
            && store
                .check_blob(&f.digest)
                .is_ok_and(|c| c == BlobCheck::Good)
        {
            return Ok(());
        }
        let tmp =
            tempfile::NamedTempFile::new_in(store.tmp_dir()).map_err(|e| refuse(e.to_string()))?;
        let mut w = HashWriter::new(std::io::BufWriter::new(tmp));
        if !self.get(&format!("blobs/{}", f.digest), FILE_TYPE, &mut w, f.size)? {
            return Err(Miss::Absent);
        }
        let (file, hex, size) = w.finish();
        let want = Descriptor {
            digest: f.digest.clone(),
            size: f.size,
            title: None,
        };
        check_bytes(&want, &hex, size).map_err(refuse)?;
        let tmp = file.into_inner().map_err(|e| refuse(e.to_string()))?;
        match (rel, tree) {
            (Some(rel), Some(dir)) => {
                let dest = dir.join(rel);
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(|e| refuse(e.to_string()))?;
                }
                tmp.persist(&dest)
                    .map_err(|e| refuse(e.error.to_string()))?;
            }
            _ => {
                let path = tmp.into_temp_path();
                store
                    .adopt_blob(&path, &f.digest)
                    .map_err(|e| refuse(e.to_string()))?;
                let _ = path.keep();
            }
        }
        Ok(())
    }
}

/// Bytes that hashed to `hex` (`size` of them) must be what `want` says.
fn check_bytes(want: &Descriptor, hex: &str, size: u64) -> Result<(), String> {
    if want.digest.strip_prefix("sha256:") != Some(hex) || want.size != size {
        return Err(format!(
            "its bytes ({size}, sha256:{hex}) do not match the recorded {} ({} bytes)",
            want.digest, want.size
        ));
    }
    Ok(())
}

/// The files of a stored step, each with its path in the store: its blobs
/// (in the record's order), then its tree's files (sorted by path).
fn step_files(store: &StepStore, job: &Job) -> std::io::Result<Vec<(FileEntry, PathBuf)>> {
    let mut out = Vec::new();
    for d in job.blobs.iter().cloned() {
        let path = store.blob(&d);
        let size = std::fs::metadata(&path)?.len();
        out.push((
            FileEntry {
                name: blob_name(&d),
                digest: d,
                size,
            },
            path,
        ));
    }
    if job.tree {
        let dir = store.root().join("trees").join(&job.key);
        for e in walkdir::WalkDir::new(&dir).sort_by_file_name() {
            let e = e.map_err(std::io::Error::other)?;
            if !e.file_type().is_file() {
                continue;
            }
            let rel = e
                .path()
                .strip_prefix(&dir)
                .expect("walk stays below its root");
            let rel = rel
                .to_str()
                .ok_or_else(|| std::io::Error::other("a file name that is not UTF-8"))?;
            let (hex, size) = crate::digest::sha256_file(e.path())?;
            out.push((
                FileEntry {
                    name: format!("tree/{rel}"),
                    digest: format!("sha256:{hex}"),
                    size,
                },
                e.path().to_path_buf(),
            ));
        }
    }
    Ok(out)
}

/// The manifest of a step whose config is `config` (bytes) and files `files`.
fn manifest_bytes(config: &[u8], files: &[(FileEntry, PathBuf)]) -> Vec<u8> {
    let layers: Vec<Value> = files
        .iter()
        .map(|(f, _)| {
            json!({"mediaType": FILE_TYPE, "digest": f.digest, "size": f.size,
                   "annotations": {TITLE: f.name}})
        })
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE,
                   "digest": format!("sha256:{}", crate::digest::sha256_hex(config)),
                   "size": config.len()},
        "layers": layers,
    });
    crate::json::to_canonical(&m)
}

impl Remote {
    /// Upload step `key` unless the registry has it: its files the
    /// registry lacks, the config, then the manifest under its tag.
    /// Whether it was sent.
    fn upload(&self, store: &StepStore, job: &Job) -> Result<bool, String> {
        let url = self.client.url(&format!(
            "/v2/{}/manifests/{}",
            self.repo,
            tag(job.kind, &job.key)
        ));
        let accept = [("Accept", MANIFEST_TYPE)];
        let r = self
            .client
            .send(Method::HEAD, &url, &accept, &Body::Empty, &self.scopes())
            .map_err(|f| f.0)?;
        if r.status == 200 {
            return Ok(false);
        }
        let files = step_files(store, job).map_err(|e| format!("cannot read its files: {e}"))?;
        let doc = StepDoc {
            format: FORMAT,
            imgforge: env!("CARGO_PKG_VERSION").to_string(),
            kind: job.kind.to_string(),
            key: job.key.clone(),
            record: job.record.clone(),
            files: files.iter().map(|(f, _)| f.clone()).collect(),
        };
        let config =
            crate::json::to_canonical(&serde_json::to_value(&doc).map_err(|e| e.to_string())?);
        let tmp = tempfile::NamedTempFile::new_in(store.tmp_dir()).map_err(|e| e.to_string())?;
        std::fs::write(tmp.path(), &config).map_err(|e| e.to_string())?;
        let mut blobs: Vec<crate::registry::layout::BlobRef> = files
            .iter()
            .map(|(f, p)| crate::registry::layout::BlobRef {
                digest: f.digest.clone(),
                size: f.size,
                path: p.clone(),
            })
            .collect();
        blobs.push(crate::registry::layout::BlobRef {
            digest: format!("sha256:{}", crate::digest::sha256_hex(&config)),
            size: config.len() as u64,
            path: tmp.path().to_path_buf(),
        });
        let known = Mutex::new(BTreeMap::new());
        for b in &blobs {
            crate::registry::push_blob(&self.client, &self.repo, b, &known)
                .map_err(|e| e.to_string())?;
        }
        let manifest = manifest_bytes(&config, &files);
        let headers = [("Content-Type", MANIFEST_TYPE)];
        let r = self
            .client
            .send(
                Method::PUT,
                &url,
                &headers,
                &Body::Bytes(&manifest),
                &self.scopes(),
            )
            .map_err(|f| f.0)?;
        if r.status != 201 {
            return Err(crate::registry::status_reason("PUT manifest", &r));
        }
        if job.counted {
            self.uploaded.fetch_add(1, Ordering::SeqCst);
        }
        Ok(true)
    }
}

/// One step to upload, taken from the store when the build kept or
/// reused it.
struct Job {
    kind: &'static str,
    key: String,
    record: Value,
    blobs: Vec<String>,
    tree: bool,
    counted: bool,
}

/// The remote caches of one build: read in order, uploaded to where
/// `--cache-to` (or `[cache] to`) says. Uploads run on one thread of
/// their own, beside the build; [`Remotes::finish`] waits for them.
#[derive(Default)]
pub struct Remotes {
    list: Vec<Arc<Remote>>,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    uploader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Remotes {
    /// The caches the options (else, unless `--no-remote-cache`, the base
    /// recipe) name, each asked once whether it answers; uploads take
    /// their files from `store`. With `--no-cache` (`read` false) nothing
    /// is read, and uploads still go.
    pub fn open(
        opts: &RemoteCacheOptions,
        recipe: &CacheTable,
        read: bool,
        store: &StepStore,
        st: Status,
    ) -> Remotes {
        let pick = |flag: &Option<String>, table: &Option<String>| match opts.ignore_recipe {
            true => flag.clone(),
            false => flag.clone().or_else(|| table.clone()),
        };
        let (from, to) = (pick(&opts.from, &recipe.from), pick(&opts.to, &recipe.to));
        let mut list = Vec::new();
        if let Some(f) = from.filter(|f| Some(f) != to.as_ref() && read) {
            list.extend(Remote::connect(&f, true, false, st).map(Arc::new));
        }
        if let Some(t) = to {
            list.extend(Remote::connect(&t, read, true, st).map(Arc::new));
        }
        let writers: Vec<Arc<Remote>> = list.iter().filter(|r| r.write).cloned().collect();
        if writers.is_empty() {
            return Remotes {
                list,
                ..Default::default()
            };
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let store = store.clone();
        let uploader = std::thread::spawn(move || {
            for job in rx {
                for r in &writers {
                    r.upload_or_warn(&store, &job);
                }
            }
        });
        Remotes {
            list,
            queue: Mutex::new(Some(tx)),
            uploader: Mutex::new(Some(uploader)),
        }
    }

    /// Whether any cache is in use.
    pub fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// Step `key` of kind `T` from the first cache that has a good copy,
    /// put into `store`; a refused copy is warned about, a cache that
    /// stopped answering is not asked again.
    pub fn fetch<T: StepRecord>(&self, store: &StepStore, key: &str) -> Option<T> {
        for r in self.list.iter().filter(|r| r.read) {
            if r.down.load(Ordering::SeqCst) {
                continue;
            }
            match r.fetch::<T>(store, key) {
                Ok(rec) => return Some(rec),
                Err(Miss::Absent) => {}
                Err(Miss::Bad(reason)) => {
                    r.st.say("Warning", r.refused(T::KIND, key, "", reason).warning())
                }
                Err(Miss::Refused(e)) => r.st.say("Warning", e),
                Err(Miss::Down(reason)) => r.went_down(reason),
            }
        }
        None
    }

    /// Queue step `key` (made or reused by this build) for upload to every
    /// cache written to that lacks it.
    pub fn share<T: StepRecord>(&self, key: &str, rec: &T) {
        let queue = self.queue.lock().expect("upload queue");
        let Some(tx) = queue.as_ref() else {
            return;
        };
        let Ok(record) = serde_json::to_value(rec) else {
            return;
        };
        let _ = tx.send(Job {
            kind: T::KIND,
            key: key.to_string(),
            record,
            blobs: rec.blobs(),
            tree: T::TREE,
            counted: T::COUNTED,
        });
    }

    /// Wait for the queued uploads (before the counts are read).
    pub fn finish(&self) {
        drop(self.queue.lock().expect("upload queue").take());
        if let Some(h) = self.uploader.lock().expect("uploader").take() {
            let _ = h.join();
        }
    }

    /// Steps fetched and uploaded, over every cache.
    pub fn counts(&self) -> (usize, usize) {
        self.list.iter().fold((0, 0), |(f, u), r| {
            (
                f + r.fetched.load(Ordering::SeqCst),
                u + r.uploaded.load(Ordering::SeqCst),
            )
        })
    }

    /// `host/repo` of every cache in use.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|r| r.name.as_str()).collect()
    }
}

impl Remote {
    /// Upload `job` unless this cache stopped answering or an upload to
    /// it failed before. A failure is warned about once and ends this
    /// cache's uploads; the build goes on.
    fn upload_or_warn(&self, store: &StepStore, job: &Job) {
        if self.down.load(Ordering::SeqCst) || self.no_upload.load(Ordering::SeqCst) {
            return;
        }
        if let Err(reason) = self.upload(store, job)
            && !self.no_upload.swap(true, Ordering::SeqCst)
        {
            let e = RemoteError::Upload {
                registry: self.name.clone(),
                kind: job.kind.to_string(),
                key: job.key.clone(),
                reason,
            };
            self.st.say("Warning", e);
        }
    }
}

impl Miss {
    fn warning(self) -> String {
        match self {
            Miss::Refused(e) => e.to_string(),
            Miss::Bad(r) | Miss::Down(r) => r,
            Miss::Absent => String::new(),
        }
    }
}

impl Ctx<'_> {
    /// The record of step `key`: the local store's, else a remote cache's
    /// (its files fetched, checked and put into the store first).
    pub fn recall<T: StepRecord>(&self, key: &str) -> Option<T> {
        self.store
            .get::<T>(T::KIND, key)
            .or_else(|| self.remote.fetch::<T>(&self.store, key))
    }

    /// Store the record of step `key`, which this build made, and upload
    /// it to the remote cache written to.
    pub fn keep<T: StepRecord>(&self, key: &str, rec: &T) -> Result<(), super::store::StoreError> {
        self.store.put(T::KIND, key, rec)?;
        self.remote.share(key, rec);
        Ok(())
    }

    /// Upload step `key`, reused from the store, to the remote cache
    /// written to, if it lacks it.
    pub fn share<T: StepRecord>(&self, key: &str, rec: &T) {
        self.remote.share(key, rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(files: &[(&str, &[u8])]) -> (Vec<u8>, Vec<u8>, Vec<(FileEntry, PathBuf)>) {
        let files: Vec<(FileEntry, PathBuf)> = files
            .iter()
            .map(|(n, b)| {
                let digest = format!("sha256:{}", crate::digest::sha256_hex(b));
                let name = n.replace("HEX", digest.trim_start_matches("sha256:"));
                let f = FileEntry {
                    name,
                    digest,
                    size: b.len() as u64,
                };
                (f, PathBuf::new())
            })
            .collect();
        let doc = StepDoc {
            format: FORMAT,
            imgforge: "0".into(),
            kind: "sbom".into(),
            key: "k1".into(),
            record: json!({"needs_review": 2}),
            files: files.iter().map(|(f, _)| f.clone()).collect(),
        };
        let config = crate::json::to_canonical(&serde_json::to_value(&doc).unwrap());
        (manifest_bytes(&config, &files), config, files)
    }

    #[test]
    fn a_written_artifact_reads_back_for_its_own_key_only() {
        let (m, c, _) = artifact(&[("tree/spdx/a.json", b"{}"), ("tree/legal/all.md", b"x")]);
        let man = parse_manifest(&m).unwrap();
        let doc = parse_doc(&c, &man, "sbom", "k1").unwrap();
        let rec: super::super::outputs::SbomRecord = record_of(&doc).unwrap();
        assert_eq!(rec.needs_review, 2);
        assert!(
            parse_doc(&c, &man, "sbom", "k2")
                .unwrap_err()
                .contains("not of this one")
        );
        assert!(parse_doc(&c, &man, "layer", "k1").is_err());
        // A layer record's kind with tree files is refused.
        let doc = StepDoc {
            kind: "layer".into(),
            ..doc
        };
        assert!(record_of::<super::super::layers::LayerRecord>(&doc).is_err());
    }

    #[test]
    fn bad_names_and_mismatched_lists_are_refused() {
        for bad in [
            "tree/../x",
            "tree/a//b",
            "tree/",
            "blobs/sha256/00",
            "other",
        ] {
            let (m, c, _) = artifact(&[(bad, b"1")]);
            let man = parse_manifest(&m).unwrap();
            assert!(parse_doc(&c, &man, "sbom", "k1").is_err(), "{bad}");
        }
        let (m, _, _) = artifact(&[("tree/a", b"1")]);
        let (_, c2, _) = artifact(&[("tree/a", b"2")]);
        let man = parse_manifest(&m).unwrap();
        assert!(
            parse_doc(&c2, &man, "sbom", "k1")
                .unwrap_err()
                .contains("differ")
        );
        let mut v: Value = serde_json::from_slice(&m).unwrap();
        v["artifactType"] = json!("application/vnd.oci.image.config.v1+json");
        assert!(parse_manifest(&serde_json::to_vec(&v).unwrap()).is_err());
        assert!(parse_manifest(b"[1]").is_err());
    }

    #[test]
    fn tags_are_registry_tags() {
        let t = tag("lint-layer", &"ab".repeat(32));
        assert_eq!(t.len(), 75);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        );
        assert_eq!(tag("a b", "k"), "a_b-k");
    }
}
