//! `imgforge bundle verify FILE [--key PUB.pem] [--base PREVIOUS]`: check a
//! bundle offline, in one streaming pass.
//!
//! The manifest comes first (and its signature second); it is checked
//! before any other entry is read. Then each entry must be one the manifest
//! lists, once, with its size and sha256; each image manifest must name the
//! config and layers the bundle manifest gives; nothing listed may be
//! missing; the archive must end with its end-of-archive blocks. A delta's
//! left-out blobs must be listed by the base release (with `--base`, whose
//! manifest digest must be the one the delta names). The first problem
//! refuses the bundle, naming the entry and the check.

use super::write::HashReader;
use super::{BundleError, Manifest, io_err};
use crate::attest::dsse;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::PathBuf;

/// Options of [`verify`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub file: PathBuf,
    /// Require a signature by this public key (PEM).
    pub key: Option<PathBuf>,
    /// The release a delta applies on top of (its bundle or manifest).
    pub base: Option<PathBuf>,
}

/// A verified bundle.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub manifest_digest: String,
    /// The key that verified the signature, if one was required.
    pub keyid: Option<String>,
    /// Whether the bundle carries a signature.
    pub signed: bool,
    /// Entries checked (files and blobs).
    pub entries: usize,
    /// Whether a delta's base was checked (`--base`).
    pub base_checked: bool,
    /// Where each file entry's bytes start in the bundle, by entry path.
    pub offsets: BTreeMap<String, u64>,
}

/// What each entry must be: path → (sha256 hex, size), or a directory.
struct Expected {
    files: BTreeMap<String, (String, u64)>,
    dirs: BTreeSet<String>,
    /// Image manifests by hex: (config, layers) the bundle manifest gives.
    images: BTreeMap<String, (String, Vec<String>)>,
}

/// Check the bundle `opts.file`.
pub fn verify(opts: &VerifyOptions) -> Result<Verified, BundleError> {
    verify_with(opts, &|_| {})
}

/// [`verify`], telling `progress` how far it got.
pub fn verify_with(
    opts: &VerifyOptions,
    progress: &dyn Fn(String),
) -> Result<Verified, BundleError> {
    let path = &opts.file;
    let refuse = |entry: &str, check: &'static str, detail: String| BundleError::Refused {
        path: path.clone(),
        entry: entry.to_string(),
        check,
        detail,
    };
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut ar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    let mut entries = ar.entries().map_err(io_err(path))?;
    let bad_tar = |after: &str, e: io::Error| {
        refuse(
            after,
            "tar structure",
            format!("unreadable after this entry: {e}"),
        )
    };
    let first = entries
        .next()
        .ok_or_else(|| refuse(super::MANIFEST, "present", "the file is empty".into()))?;
    let first = first.map_err(|e| bad_tar("(start)", e))?;
    let (bytes, _) = small_entry(first, super::MANIFEST, &refuse)?;
    let manifest = super::parse(&bytes).map_err(|d| refuse(super::MANIFEST, "format", d))?;
    let manifest_digest = format!("sha256:{}", crate::digest::sha256_hex(&bytes));
    let mut expected = expected(&manifest).map_err(|(e, d)| refuse(&e, "consistency", d))?;
    let base_checked = check_base(opts, &manifest)?;
    let mut pending = None;
    let mut envelope = None;
    if let Some(next) = entries.next() {
        let next = next.map_err(|e| bad_tar(super::MANIFEST, e))?;
        if next.path_bytes().as_ref() == super::ENVELOPE.as_bytes() {
            envelope = Some(small_entry(next, super::ENVELOPE, &refuse)?.0);
        } else {
            pending = Some(next);
        }
    }
    let keyid = check_signature(opts, &bytes, envelope.as_deref())?;
    let mut last = super::ENVELOPE.to_string();
    let mut end = 0;
    let mut n = 0;
    let mut offsets = BTreeMap::new();
    let mut next = pending.map(Ok);
    loop {
        let e = match next.take().or_else(|| entries.next()) {
            None => break,
            Some(e) => e.map_err(|e| bad_tar(&last, e))?,
        };
        last = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        end = e.raw_file_position() + e.size().div_ceil(512) * 512;
        if e.header().entry_type().is_file() {
            offsets.insert(last.clone(), e.raw_file_position());
        }
        check_entry(e, &last, &mut expected, &refuse)?;
        n += 1;
        progress(format!(
            "verifying: {} of {} MB",
            end / 1_000_000,
            len / 1_000_000
        ));
    }
    if let Some((p, _)) = expected.files.iter().next() {
        return Err(refuse(
            p,
            "present",
            format!(
                "listed by the manifest but not in the file, which ends after {last} (truncated?)"
            ),
        ));
    }
    trailer(ar.into_inner(), len, end, &last, &refuse)?;
    Ok(Verified {
        manifest,
        manifest_digest,
        keyid,
        signed: envelope.is_some(),
        entries: n,
        base_checked,
        offsets,
    })
}

type Refuse<'a> = dyn Fn(&str, &'static str, String) -> BundleError + 'a;

/// The manifest or envelope entry, whole (bounded).
fn small_entry<R: Read>(
    mut e: tar::Entry<'_, R>,
    name: &str,
    refuse: &Refuse<'_>,
) -> Result<(Vec<u8>, u64), BundleError> {
    if e.path_bytes().as_ref() != name.as_bytes() {
        let got = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        return Err(refuse(
            name,
            "first entry",
            format!("the first entry is {got:?}: not an imgforge bundle"),
        ));
    }
    if e.size() > super::MAX_MANIFEST {
        return Err(refuse(
            name,
            "size",
            format!("{} bytes, more than the 64 MiB allowed", e.size()),
        ));
    }
    let mut b = Vec::new();
    e.read_to_end(&mut b)
        .map_err(|x| refuse(name, "read", x.to_string()))?;
    if b.len() as u64 != e.size() {
        return Err(refuse(
            name,
            "size",
            format!("{} of {} bytes (truncated)", b.len(), e.size()),
        ));
    }
    let size = e.size();
    Ok((b, size))
}

/// The entries the manifest lists, after checking that it is consistent:
/// every image's blobs are listed, its manifest and config included.
fn expected(m: &Manifest) -> Result<Expected, (String, String)> {
    let blobs: BTreeMap<&str, &super::Blob> =
        m.blobs.iter().map(|b| (b.digest.as_str(), b)).collect();
    let mut images = BTreeMap::new();
    for i in &m.images {
        for d in std::iter::once(&i.manifest)
            .chain([&i.config])
            .chain(&i.layers)
        {
            let Some(b) = blobs.get(d.as_str()) else {
                return Err((
                    super::MANIFEST.into(),
                    format!("image {} uses {d}, which the blob list lacks", i.reference),
                ));
            };
            if !b.included && (d == &i.manifest || d == &i.config) {
                return Err((
                    super::MANIFEST.into(),
                    format!(
                        "image {}: {d} (its manifest or config) is left out",
                        i.reference
                    ),
                ));
            }
        }
        let hex = i.manifest.trim_start_matches("sha256:").to_string();
        images.insert(hex, (i.config.clone(), i.layers.clone()));
    }
    let mut files = BTreeMap::new();
    for b in m.blobs.iter().filter(|b| b.included) {
        let hex = b.digest.strip_prefix("sha256:").unwrap_or_default();
        if !crate::digest::is_sha256_hex(hex) {
            return Err((
                super::MANIFEST.into(),
                format!("{:?} is not a sha256 digest", b.digest),
            ));
        }
        files.insert(b.path(), (hex.to_string(), b.size));
    }
    for f in &m.files {
        let safe = !f.path.starts_with('/')
            && f.path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !safe
            || files
                .insert(f.path.clone(), (f.sha256.clone(), f.size))
                .is_some()
        {
            return Err((
                f.path.clone(),
                "listed twice, or not a plain relative path".into(),
            ));
        }
    }
    let mut dirs = BTreeSet::new();
    for p in files.keys() {
        let mut at = p.as_str();
        while let Some(i) = at.rfind('/') {
            at = &at[..i];
            dirs.insert(format!("{at}/"));
        }
    }
    Ok(Expected {
        files,
        dirs,
        images,
    })
}

/// `--base`: the delta's base manifest digest, and every left-out blob
/// listed by the base. Returns whether the base was checked.
fn check_base(opts: &VerifyOptions, m: &Manifest) -> Result<bool, BundleError> {
    let (Some(base), Some(prev)) = (&m.base, &opts.base) else {
        return Ok(false);
    };
    let wrong = |detail: String| BundleError::WrongBase {
        path: opts.file.clone(),
        detail,
    };
    if let Some((inv, digest)) = super::inventory::read(prev)? {
        return check_inventory_base(m, base, &inv, &digest, prev, &wrong);
    }
    let (pm, digest) = super::read_previous(prev)?;
    if digest != base.manifest {
        return Err(wrong(format!(
            "a delta on top of release {} (manifest {}), but {} is release {} (manifest {digest})",
            base.release,
            base.manifest,
            prev.display(),
            pm.release
        )));
    }
    let held: BTreeMap<&str, u64> = pm
        .blobs
        .iter()
        .map(|b| (b.digest.as_str(), b.size))
        .collect();
    let needed = super::needed_layers(&m.images, &pm.images);
    for b in m.blobs.iter().filter(|b| !b.included) {
        if held.get(b.digest.as_str()) != Some(&b.size) {
            return Err(wrong(format!(
                "{} is left to the base, which does not list it",
                b.digest
            )));
        }
        if needed.contains(&b.digest) {
            return Err(wrong(format!(
                "{} is left out, but the base holds it only under other layers (docker could not load it)",
                b.digest
            )));
        }
    }
    Ok(true)
}

/// `--base INVENTORY`: the inventory the delta was made against (by
/// digest); from a registry, it lists every left-out blob. (From docker,
/// the left-out layers were chosen by chain ID, which needs the configs:
/// the digest is the check.)
fn check_inventory_base(
    m: &Manifest,
    base: &super::Base,
    inv: &super::inventory::Inventory,
    digest: &str,
    prev: &std::path::Path,
    wrong: &dyn Fn(String) -> BundleError,
) -> Result<bool, BundleError> {
    if digest != base.manifest {
        return Err(wrong(format!(
            "a delta on top of {} ({}), but {} is the inventory of {} ({digest})",
            base.release,
            base.manifest,
            prev.display(),
            inv.source
        )));
    }
    let held: BTreeSet<&str> = inv.blobs.iter().map(String::as_str).collect();
    if inv.kind == "registry" {
        for b in m.blobs.iter().filter(|b| !b.included) {
            if !held.contains(b.digest.as_str()) {
                return Err(wrong(format!(
                    "{} is left to the site, whose inventory does not list it",
                    b.digest
                )));
            }
        }
    }
    Ok(true)
}

/// With `--key`, the envelope must verify and carry exactly the manifest.
fn check_signature(
    opts: &VerifyOptions,
    manifest: &[u8],
    envelope: Option<&[u8]>,
) -> Result<Option<String>, BundleError> {
    let Some(key_file) = &opts.key else {
        return Ok(None);
    };
    let key = dsse::VerifyingKey::from_pem_file(key_file)?;
    let refuse = |detail: String| BundleError::Refused {
        path: opts.file.clone(),
        entry: super::ENVELOPE.into(),
        check: "signature",
        detail,
    };
    let env = envelope.ok_or_else(|| refuse("the bundle is not signed (no second entry imgforge-bundle.dsse.json), and --key requires a signature".into()))?;
    let env: serde_json::Value =
        serde_json::from_slice(env).map_err(|e| refuse(format!("not JSON: {e}")))?;
    let (ty, payload) = dsse::open(&env, &key, &opts.file.join(super::ENVELOPE))?;
    if ty != super::PAYLOAD_TYPE || payload != manifest {
        return Err(refuse(format!(
            "the signed payload ({ty}) is not the bundle's {}",
            super::MANIFEST
        )));
    }
    Ok(Some(key.keyid()))
}

/// One entry after the manifest: listed, once, its size and sha256.
fn check_entry<R: Read>(
    e: tar::Entry<'_, R>,
    path: &str,
    x: &mut Expected,
    refuse: &Refuse<'_>,
) -> Result<(), BundleError> {
    let kind = e.header().entry_type();
    if kind.is_dir() {
        if !x.dirs.remove(path) {
            return Err(refuse(
                path,
                "listed",
                "a directory no listed entry is in (or twice)".into(),
            ));
        }
        return Ok(());
    }
    if !kind.is_file() {
        return Err(refuse(
            path,
            "entry type",
            format!("{kind:?}: a bundle holds only files and directories"),
        ));
    }
    let Some((hex, size)) = x.files.remove(path) else {
        return Err(refuse(
            path,
            "listed",
            format!("not in {} (or there twice)", super::MANIFEST),
        ));
    };
    if e.size() != size {
        return Err(refuse(
            path,
            "size",
            format!(
                "{} bytes in the tar header, {size} in the manifest",
                e.size()
            ),
        ));
    }
    let image = path
        .strip_prefix("blobs/sha256/")
        .and_then(|h| x.images.get(h));
    let mut keep = Vec::new();
    let mut r = HashReader {
        inner: e,
        h: crate::digest::HashWriter::new(io::sink()),
    };
    let copied = match image {
        Some(_) if size <= 4 << 20 => r.read_to_end(&mut keep).map(|n| n as u64),
        Some(_) => return Err(refuse(path, "size", "an image manifest over 4 MiB".into())),
        None => io::copy(&mut r, &mut io::sink()),
    };
    copied.map_err(|err| refuse(path, "read", err.to_string()))?;
    let (_, got, n) = r.h.finish();
    if n != size {
        return Err(refuse(
            path,
            "size",
            format!("{n} of {size} bytes (truncated)"),
        ));
    }
    if got != hex {
        return Err(refuse(
            path,
            "sha256",
            format!("the bytes hash to sha256:{got}, the manifest says sha256:{hex}"),
        ));
    }
    if let Some((config, layers)) = image {
        let v: serde_json::Value = serde_json::from_slice(&keep).unwrap_or_default();
        let got_layers: Vec<&str> = v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str())
            .collect();
        if v["config"]["digest"].as_str() != Some(config.as_str()) || got_layers != *layers {
            return Err(refuse(
                path,
                "image manifest",
                "its config or layers are not those the bundle manifest gives".into(),
            ));
        }
    }
    Ok(())
}

/// After the last entry (ending at `end`), the end-of-archive marker: at
/// least two zero blocks, and nothing but zeros.
fn trailer<R: Read>(
    mut rest: R,
    len: u64,
    end: u64,
    last: &str,
    refuse: &Refuse<'_>,
) -> Result<(), BundleError> {
    let mut buf = [0u8; 8192];
    let mut extra = 0u64;
    loop {
        let n = rest
            .read(&mut buf)
            .map_err(|e| refuse(last, "end of archive", e.to_string()))?;
        if n == 0 {
            break;
        }
        extra += n as u64;
        if buf[..n].iter().any(|b| *b != 0) || extra > 1 << 20 {
            return Err(refuse(
                last,
                "end of archive",
                "data after the archive's end".into(),
            ));
        }
    }
    if len < end + 1024 {
        return Err(refuse(
            last,
            "end of archive",
            format!(
                "the file ends {} byte(s) after this entry, without the end-of-archive blocks (truncated)",
                len.saturating_sub(end)
            ),
        ));
    }
    Ok(())
}
