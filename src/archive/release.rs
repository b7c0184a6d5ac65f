//! `InRelease` / `Release` + `Release.gpg`: the signature check against an
//! OpenPGP keyring (the `pgp` crate, pure Rust) and the SHA256 list the
//! signed text carries, from which every `Packages` index is verified.
//!
//! Only the signed text is ever parsed. The last verified Release of each
//! `uri suite` is kept in the cache and verified again when reused; it is
//! replaced only when `refresh` is asked (`lock`, `update`).

use super::fetch::Client;
use super::sources::{ArchiveSource, Keys};
use super::store::Store;
use super::{ArchiveError, ArchiveOptions};
use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use std::collections::BTreeMap;
use std::path::Path;

/// The signed facts of one suite.
#[derive(Debug, Clone)]
pub struct Release {
    /// `<uri>/dists/<suite>`.
    pub dist: String,
    /// Where the signed text came from (for messages).
    pub url: String,
    /// `Acquire-By-Hash: yes`.
    pub by_hash: bool,
    /// path -> (sha256, size), from the `SHA256:` field.
    pub files: BTreeMap<String, (String, u64)>,
    /// Verified Release files to cache once every index of the suite is
    /// verified too ([`commit`]).
    pub pending: Vec<(std::path::PathBuf, Vec<u8>)>,
}

/// Cache the verified Release files of `rel`.
pub fn commit(rel: &Release) -> Result<(), ArchiveError> {
    for (path, bytes) in &rel.pending {
        put(path, bytes)?;
    }
    Ok(())
}

/// Read the keys of `keys` (binary or armored keyrings).
pub fn load_keys(keys: &Keys) -> Result<Vec<SignedPublicKey>, ArchiveError> {
    let bad = |path: &str, e: &dyn std::fmt::Display| ArchiveError::Keyring {
        path: path.to_string(),
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    match keys {
        Keys::Inline(text) => {
            let (it, _) =
                SignedPublicKey::from_string_many(text).map_err(|e| bad("inline Signed-By", &e))?;
            for k in it {
                out.push(k.map_err(|e| bad("inline Signed-By", &e))?);
            }
        }
        Keys::Files(files) => {
            for f in files {
                let name = f.display().to_string();
                let file = std::fs::File::open(f).map_err(|e| bad(&name, &e))?;
                let (it, _) =
                    SignedPublicKey::from_reader_many(file).map_err(|e| bad(&name, &e))?;
                for k in it {
                    out.push(k.map_err(|e| bad(&name, &e))?);
                }
            }
        }
    }
    Ok(out)
}

fn keys_label(keys: &Keys) -> String {
    match keys {
        Keys::Inline(_) => "an inline Signed-By key".into(),
        Keys::Files(f) if f.is_empty() => "no keyring".into(),
        Keys::Files(f) => f
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// True when `sig` verifies over `data` with a primary key or subkey of `keys`.
fn verified_by(sig: &Signature, data: &[u8], keys: &[SignedPublicKey]) -> bool {
    keys.iter().any(|k| {
        sig.verify(&k.primary_key, data).is_ok()
            || k.public_subkeys
                .iter()
                .any(|s| sig.verify(&s.key, data).is_ok())
    })
}

fn issuers(sigs: &[&Signature]) -> String {
    let ids: Vec<String> = sigs
        .iter()
        .flat_map(|s| s.issuer())
        .map(|id| format!("{id:?}"))
        .collect();
    if ids.is_empty() {
        "none named".into()
    } else {
        ids.join(", ")
    }
}

/// Check a clearsigned `InRelease`; returns the signed text.
pub fn verify_inrelease(bytes: &[u8], keys: &[SignedPublicKey]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let (msg, _) = CleartextSignedMessage::from_string(text)
        .map_err(|e| format!("not a clearsigned OpenPGP message ({e})"))?;
    let data = msg.signed_text();
    if msg
        .signatures()
        .iter()
        .any(|s| verified_by(s, data.as_bytes(), keys))
    {
        return Ok(data.replace("\r\n", "\n"));
    }
    let sigs: Vec<&Signature> = msg.signatures().iter().collect();
    Err(format!(
        "none of its {} signature(s) verifies with the {} key(s) of the keyring (signed by key ids: {}): the text was changed or the key is unknown",
        sigs.len(),
        keys.len(),
        issuers(&sigs)
    ))
}

/// Check `Release` against a detached `Release.gpg`.
pub fn verify_detached(release: &[u8], sig: &[u8], keys: &[SignedPublicKey]) -> Result<(), String> {
    let (it, _) = DetachedSignature::from_reader_many(sig)
        .map_err(|e| format!("Release.gpg is not an OpenPGP signature ({e})"))?;
    let sigs: Vec<DetachedSignature> = it.filter_map(Result::ok).collect();
    if sigs
        .iter()
        .any(|s| verified_by(&s.signature, release, keys))
    {
        return Ok(());
    }
    let refs: Vec<&Signature> = sigs.iter().map(|s| &s.signature).collect();
    Err(format!(
        "none of the {} signature(s) in Release.gpg verifies with the {} key(s) of the keyring (signed by key ids: {})",
        refs.len(),
        keys.len(),
        issuers(&refs)
    ))
}

/// Parse the fields imgforge uses from a Release text.
pub fn parse_release(text: &str, dist: &str, url: &str) -> Release {
    let mut files = BTreeMap::new();
    let mut by_hash = false;
    let mut in_sha = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if in_sha {
                let w: Vec<&str> = line.split_whitespace().collect();
                if let [h, size, path] = w[..] {
                    if let Ok(size) = size.parse() {
                        files.insert(path.to_string(), (h.to_ascii_lowercase(), size));
                    }
                }
            }
            continue;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        in_sha = k == "SHA256";
        if k == "Acquire-By-Hash" {
            by_hash = v.trim() == "yes";
        }
    }
    Release {
        dist: dist.to_string(),
        url: url.to_string(),
        by_hash,
        files,
        pending: Vec::new(),
    }
}

/// Write `bytes` at `path` via a temporary file in the same directory.
fn put(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ArchiveError::io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(ArchiveError::io(dir))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(ArchiveError::io(path))?;
    tmp.persist(path).map_err(|e| ArchiveError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// The verified Release of `suite` (from the cache unless `opts.refresh`).
pub fn get_release(
    client: &Client,
    src: &ArchiveSource,
    suite: &str,
    opts: &ArchiveOptions,
    downloaded: &mut u64,
) -> Result<Release, ArchiveError> {
    let dist = format!("{}/dists/{suite}", src.uri);
    let dir = Store::new(&opts.cache).release_dir(&src.uri, suite);
    let cached = |name: &str| std::fs::read(dir.join(name)).ok();
    let (inrel, rel, sig) =
        if !opts.refresh && (dir.join("InRelease").is_file() || dir.join("Release").is_file()) {
            (
                cached("InRelease"),
                cached("Release"),
                cached("Release.gpg"),
            )
        } else {
            let inrel = client.get(&format!("{dist}/InRelease"))?;
            let (rel, sig) = match inrel {
                Some(_) => (None, None),
                None => (
                    client.get(&format!("{dist}/Release"))?,
                    client.get(&format!("{dist}/Release.gpg"))?,
                ),
            };
            for b in [&inrel, &rel, &sig].into_iter().flatten() {
                *downloaded += b.len() as u64;
            }
            (inrel, rel, sig)
        };
    let keys = if src.trusted {
        Vec::new()
    } else {
        load_keys(&src.keys)?
    };
    let fail = |url: String, reason: String| ArchiveError::Signature {
        url,
        keys: keys_label(&src.keys),
        reason,
    };
    let mut pending = Vec::new();
    let (text, url) = if let Some(b) = &inrel {
        let url = format!("{dist}/InRelease");
        let text = match verify_inrelease(b, &keys) {
            Ok(t) => t,
            Err(_) if src.trusted => strip_clearsign(b),
            Err(r) => return Err(fail(url, r)),
        };
        pending.push((dir.join("InRelease"), b.clone()));
        (text, url)
    } else if let Some(r) = &rel {
        let url = format!("{dist}/Release");
        match (&sig, src.trusted) {
            (_, true) => {}
            (None, false) => return Err(ArchiveError::Unsigned { url: dist }),
            (Some(s), false) => {
                verify_detached(r, s, &keys).map_err(|e| fail(format!("{dist}/Release.gpg"), e))?
            }
        }
        pending.push((dir.join("Release"), r.clone()));
        if let Some(s) = &sig {
            pending.push((dir.join("Release.gpg"), s.clone()));
        }
        (String::from_utf8_lossy(r).into_owned(), url)
    } else {
        return Err(ArchiveError::Http {
            url: format!("{dist}/InRelease"),
            reason: "not found (nor Release)".into(),
        });
    };
    let mut rel = parse_release(&text, &dist, &url);
    rel.pending = pending;
    Ok(rel)
}

/// The text of a clearsigned message without checking it (trusted sources).
fn strip_clearsign(b: &[u8]) -> String {
    let t = String::from_utf8_lossy(b);
    let body = t.split_once("\n\n").map_or(t.as_ref(), |(_, b)| b);
    body.split("\n-----BEGIN PGP SIGNATURE-----")
        .next()
        .unwrap_or("")
        .to_string()
}

/// The verified `Packages` index of one component, in the by-hash cache.
pub fn packages_file(
    client: &Client,
    comp: &str,
    rel: &Release,
    opts: &ArchiveOptions,
    downloaded: &mut u64,
) -> Result<std::path::PathBuf, ArchiveError> {
    let dir = format!("{comp}/binary-{}", opts.arch);
    index_file(client, &dir, "Packages", rel, opts, downloaded)?.ok_or_else(|| {
        ArchiveError::NotListed {
            url: rel.url.clone(),
            what: format!("{dir}/Packages(.xz|.gz) that the archive serves"),
        }
    })
}

/// The verified index `<dir>/<stem>(.xz|.gz|)` of a suite (`Packages`,
/// `Sources`), in the by-hash cache; `None` when the signed Release lists
/// none the archive serves.
pub fn index_file(
    client: &Client,
    dir: &str,
    stem: &str,
    rel: &Release,
    opts: &ArchiveOptions,
    downloaded: &mut u64,
) -> Result<Option<std::path::PathBuf>, ArchiveError> {
    let st = Store::new(&opts.cache);
    for name in [format!("{stem}.xz"), format!("{stem}.gz"), stem.to_string()] {
        let Some((sha, _)) = rel.files.get(&format!("{dir}/{name}")) else {
            continue;
        };
        let dest = st.index_path(sha);
        if dest.is_file() {
            return Ok(Some(dest));
        }
        let against = format!("the SHA256 signed in {}", rel.url);
        let mut urls = Vec::new();
        if rel.by_hash {
            urls.push(format!("{}/{dir}/by-hash/SHA256/{sha}", rel.dist));
        }
        urls.push(format!("{}/{dir}/{name}", rel.dist));
        for url in urls {
            if let Some(n) = client.download_verified(&url, &dest, sha, &against)? {
                *downloaded += n;
                return Ok(Some(dest));
            }
        }
    }
    Ok(None)
}
