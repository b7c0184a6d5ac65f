//! `imgforge bundle OUT -o FILE`: the bundle of a build output.
//!
//! Every entry is streamed from the output into a temporary file beside
//! FILE, hashed as it is written and compared with the digest the manifest
//! lists (a blob that changed since the build is refused, not shipped); the
//! temporary file is renamed into place at the end.

use super::{Base, Blob, BundleError, File, Image, Manifest, io_err};
use crate::attest::dsse;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Options of [`write`].
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// The output directory of `imgforge build`.
    pub out: PathBuf,
    /// The bundle file to write.
    pub dest: PathBuf,
    /// Sign the manifest with this PKCS#8 PEM private key.
    pub sign_key: Option<PathBuf>,
    /// A previous bundle or its manifest: leave out the layers it lists.
    pub since: Option<PathBuf>,
    /// The release name [default: `sha256:` of the output's `index.json`].
    pub release: Option<String>,
    /// A directory written by `imgforge sources OUT -o DIR`: its files
    /// travel under `sources/` (the corresponding source the licenses
    /// oblige the vendor to offer, which a dark site cannot fetch later).
    pub sources: Option<PathBuf>,
}

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest: Manifest,
    /// `sha256:` of the manifest bytes (what a delta names as its base).
    pub manifest_digest: String,
    /// The bundle's size in bytes.
    pub size: u64,
    /// The signing key's id, when signed.
    pub keyid: Option<String>,
}

/// Directories of the output whose files travel in the bundle, and single files.
const CARRIED_DIRS: &[&str] = &["attest", "legal", "sbom"];
const CARRIED_FILES: &[&str] = &["imgforge-record.json", "index.json", "oci-layout"];
/// The largest OCI manifest read into memory.
const MAX_DOC: u64 = 4 << 20;

/// Where an entry's bytes come from.
enum Source {
    Dir,
    Bytes(Vec<u8>),
    Disk(PathBuf, String, u64),
}

/// Write the bundle of `opts.out` to `opts.dest`.
pub fn write(opts: &BundleOptions) -> Result<Written, BundleError> {
    write_with(opts, &|_| {})
}

/// [`write`], telling `progress` how far it got.
pub fn write_with(opts: &BundleOptions, progress: &dyn Fn(String)) -> Result<Written, BundleError> {
    let out = &opts.out;
    let index_path = out.join("index.json");
    let index_bytes = read_small(&index_path)?;
    let images = images(out, &index_bytes)?;
    let mut blobs = blob_list(out, &images)?;
    let mut entries: BTreeMap<String, Source> = BTreeMap::new();
    entries.insert(
        "manifest.json".into(),
        Source::Bytes(docker_manifest(&images)),
    );
    let mut files = carried_files(out, &mut entries)?;
    if let Some(dir) = &opts.sources {
        progress(format!("hashing the source packages in {}", dir.display()));
        files.extend(carried_sources(dir, &mut entries)?);
    }
    let base = match &opts.since {
        Some(prev) => Some(leave_out(out, prev, &images, &mut blobs)?),
        None => None,
    };
    let release = opts
        .release
        .clone()
        .unwrap_or_else(|| format!("sha256:{}", crate::digest::sha256_hex(&index_bytes)));
    let mut manifest = Manifest {
        bundle_version: super::VERSION,
        release,
        base,
        images,
        blobs,
        files: Vec::new(),
    };
    progress("writing the upgrade report".into());
    let now = super::report::facts_of_output(out, &manifest.images)?;
    let prev = match &opts.since {
        Some(p) => Some(super::report::facts_of_previous(p)?),
        None => None,
    };
    let report = super::report::report(out, &manifest, &now, prev.as_ref())?;
    for (name, bytes) in super::report::render(&report) {
        entries.insert(name.to_string(), Source::Bytes(bytes));
    }
    for (path, src) in &entries {
        if let Source::Bytes(b) = src {
            let hex = crate::digest::sha256_hex(b);
            files.push(File {
                path: path.clone(),
                sha256: hex,
                size: b.len() as u64,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    manifest.files = files;
    for b in manifest.blobs.iter().filter(|b| b.included) {
        let p = out.join(b.path());
        let hex = b.digest.trim_start_matches("sha256:").to_string();
        entries.insert(b.path(), Source::Disk(p, hex, b.size));
    }
    let bytes = manifest.to_bytes();
    let manifest_digest = format!("sha256:{}", crate::digest::sha256_hex(&bytes));
    let (envelope, keyid) = match &opts.sign_key {
        Some(k) => {
            let key = dsse::SigningKey::from_pem_file(k)?;
            let env = dsse::sign(super::PAYLOAD_TYPE, &bytes, &key);
            (
                Some(crate::json::to_canonical_pretty(&env)),
                Some(key.verifying_key().keyid()),
            )
        }
        None => (None, None),
    };
    add_dirs(&mut entries);
    let size = write_tar(&opts.dest, &bytes, envelope.as_deref(), &entries, progress)?;
    Ok(Written {
        manifest,
        manifest_digest,
        size,
        keyid,
    })
}

/// A small file (index, manifest), whole.
fn read_small(path: &Path) -> Result<Vec<u8>, BundleError> {
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut b = Vec::new();
    f.take(MAX_DOC + 1)
        .read_to_end(&mut b)
        .map_err(io_err(path))?;
    if b.len() as u64 > MAX_DOC {
        return Err(BundleError::Output {
            path: path.into(),
            reason: "larger than 4 MiB".into(),
        });
    }
    Ok(b)
}

fn json_of(path: &Path, bytes: &[u8]) -> Result<Value, BundleError> {
    serde_json::from_slice(bytes).map_err(|e| BundleError::Output {
        path: path.into(),
        reason: format!("not JSON: {e}"),
    })
}

/// The images of the layout's `index.json`, sorted by reference, with
/// their manifests' config and layers.
fn images(out: &Path, index_bytes: &[u8]) -> Result<Vec<Image>, BundleError> {
    let index = json_of(&out.join("index.json"), index_bytes)?;
    let mut images = Vec::new();
    for d in index["manifests"].as_array().into_iter().flatten() {
        let (Some(reference), Some(digest)) = (
            d["annotations"]["org.opencontainers.image.ref.name"].as_str(),
            d["digest"].as_str(),
        ) else {
            continue;
        };
        let path = out.join(super::blob_path(digest));
        let m = json_of(&path, &read_small(&path)?)?;
        let layers = m["layers"].as_array().into_iter().flatten();
        images.push(Image {
            reference: reference.to_string(),
            manifest: digest.to_string(),
            config: m["config"]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            layers: layers
                .filter_map(|l| l["digest"].as_str().map(str::to_string))
                .collect(),
        });
    }
    if images.is_empty() {
        return Err(BundleError::Output {
            path: out.join("index.json"),
            reason: "names no image (no manifest with a ref.name annotation)".into(),
        });
    }
    images.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(images)
}

/// Every blob the images use, with its size on disk, sorted by digest.
fn blob_list(out: &Path, images: &[Image]) -> Result<Vec<Blob>, BundleError> {
    let mut digests = BTreeSet::new();
    for i in images {
        digests.insert(i.manifest.clone());
        digests.insert(i.config.clone());
        digests.extend(i.layers.iter().cloned());
    }
    let mut blobs = Vec::new();
    for d in digests {
        let hex = d.trim_start_matches("sha256:");
        if !crate::digest::is_sha256_hex(hex) {
            return Err(BundleError::Output {
                path: out.into(),
                reason: format!("{d:?} is not a sha256 digest"),
            });
        }
        let p = out.join(super::blob_path(&d));
        let size = std::fs::metadata(&p).map_err(io_err(&p))?.len();
        blobs.push(Blob {
            digest: d,
            size,
            included: true,
        });
    }
    Ok(blobs)
}

/// The files of the output that travel, hashed; disk entries added to `entries`.
fn carried_files(
    out: &Path,
    entries: &mut BTreeMap<String, Source>,
) -> Result<Vec<File>, BundleError> {
    let mut paths: Vec<PathBuf> = CARRIED_FILES
        .iter()
        .map(|f| out.join(f))
        .filter(|p| p.is_file())
        .collect();
    for d in CARRIED_DIRS {
        for e in walkdir::WalkDir::new(out.join(d)).sort_by_file_name() {
            match e {
                Ok(e) if e.file_type().is_file() => paths.push(e.into_path()),
                Ok(_) => {}
                Err(e)
                    if e.io_error()
                        .is_some_and(|x| x.kind() == io::ErrorKind::NotFound) => {}
                Err(e) => return Err(io_err(out)(io::Error::other(e))),
            }
        }
    }
    let mut files = Vec::new();
    for p in paths {
        let rel = p.strip_prefix(out).expect("walked below out");
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let (hex, size) = crate::digest::sha256_file(&p).map_err(io_err(&p))?;
        entries.insert(rel.clone(), Source::Disk(p, hex.clone(), size));
        files.push(File {
            path: rel,
            sha256: hex,
            size,
        });
    }
    Ok(files)
}

/// The files of an `imgforge sources` directory, under `sources/`.
fn carried_sources(
    dir: &Path,
    entries: &mut BTreeMap<String, Source>,
) -> Result<Vec<File>, BundleError> {
    let refuse = |reason: String| BundleError::Sources {
        path: dir.to_path_buf(),
        reason,
    };
    if !dir.join("sources.json").is_file() {
        return Err(refuse(
            "no sources.json: not a directory written by `imgforge sources`".into(),
        ));
    }
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| refuse(e.to_string()))?;
        let ft = e.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(dir).expect("walked below dir");
        if !ft.is_file() {
            return Err(refuse(format!("{}: not a regular file", rel.display())));
        }
        let mut name = String::from("sources");
        for c in rel.components() {
            let c = c
                .as_os_str()
                .to_str()
                .ok_or_else(|| refuse(format!("{}: the name is not UTF-8", rel.display())))?;
            name.push('/');
            name.push_str(c);
        }
        let p = e.into_path();
        let (hex, size) = crate::digest::sha256_file(&p).map_err(io_err(&p))?;
        entries.insert(name.clone(), Source::Disk(p, hex.clone(), size));
        files.push(File {
            path: name,
            sha256: hex,
            size,
        });
    }
    Ok(files)
}

/// Mark the layers a site holding `prev` has as left to the base:
/// a previous release's by chain (see [`super::needed_layers`]), a docker
/// inventory's by chain ID, a registry inventory's by digest. Configs and
/// image manifests always travel (`docker load` reads every image's config).
fn leave_out(
    out: &Path,
    prev: &Path,
    images: &[Image],
    blobs: &mut [Blob],
) -> Result<Base, BundleError> {
    let (held, needed, base) = match super::inventory::read(prev)? {
        Some((inv, digest)) => {
            let needed = match inv.kind.as_str() {
                "docker" => docker_needed(out, images, &inv)?,
                _ => BTreeSet::new(),
            };
            let held: BTreeSet<String> = match inv.kind.as_str() {
                "docker" => blobs.iter().map(|b| b.digest.clone()).collect(),
                _ => inv.blobs.iter().cloned().collect(),
            };
            let release = format!("inventory of {}", inv.source);
            (
                held,
                needed,
                Base {
                    release,
                    manifest: digest,
                },
            )
        }
        None => {
            let (pm, digest) = super::read_previous(prev)?;
            let held = pm.blobs.iter().map(|b| b.digest.clone()).collect();
            let needed = super::needed_layers(images, &pm.images);
            (
                held,
                needed,
                Base {
                    release: pm.release,
                    manifest: digest,
                },
            )
        }
    };
    let small: BTreeSet<&str> = images
        .iter()
        .flat_map(|i| [i.manifest.as_str(), i.config.as_str()])
        .collect();
    for b in blobs.iter_mut() {
        let d = b.digest.as_str();
        if held.contains(d) && !small.contains(d) && !needed.contains(d) {
            b.included = false;
        }
    }
    Ok(base)
}

/// The layers a docker daemon with `inv` lacks: above each image's highest
/// stack whose chain ID (from the config's diff IDs) the daemon holds.
fn docker_needed(
    out: &Path,
    images: &[Image],
    inv: &super::inventory::Inventory,
) -> Result<BTreeSet<String>, BundleError> {
    let held: BTreeSet<&str> = inv.chain_ids.iter().map(String::as_str).collect();
    let mut chains: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for i in images {
        let p = out.join(super::blob_path(&i.config));
        let cfg = json_of(&p, &read_small(&p)?)?;
        let diff_ids: Vec<String> = cfg["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        if diff_ids.len() != i.layers.len() {
            return Err(BundleError::Output {
                path: p,
                reason: format!("{} diff IDs for {} layers", diff_ids.len(), i.layers.len()),
            });
        }
        chains.insert(&i.reference, super::inventory::chain_ids(&diff_ids));
    }
    Ok(super::needed_by(images, |i, n| {
        held.contains(chains[i.reference.as_str()][n - 1].as_str())
    }))
}

/// The docker `manifest.json`: one entry per image, sorted by reference.
fn docker_manifest(images: &[Image]) -> Vec<u8> {
    let v: Vec<Value> = images
        .iter()
        .map(|i| {
            json!({
                "Config": super::blob_path(&i.config),
                "RepoTags": [i.reference],
                "Layers": i.layers.iter().map(|l| super::blob_path(l)).collect::<Vec<_>>(),
            })
        })
        .collect();
    crate::json::to_canonical(&Value::Array(v))
}

/// Every parent directory of an entry, as an entry of its own.
fn add_dirs(entries: &mut BTreeMap<String, Source>) {
    let mut dirs = BTreeSet::new();
    for p in entries.keys() {
        let mut at = p.as_str();
        while let Some(i) = at.rfind('/') {
            at = &at[..i];
            dirs.insert(format!("{at}/"));
        }
    }
    for d in dirs {
        entries.insert(d, Source::Dir);
    }
}

/// A fixed header: mtime 0, root-owned, 0644 files and 0755 directories.
pub(crate) fn header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

/// Write the tar into a temporary file beside `dest`, then rename it.
fn write_tar(
    dest: &Path,
    manifest: &[u8],
    envelope: Option<&[u8]>,
    entries: &BTreeMap<String, Source>,
    progress: &dyn Fn(String),
) -> Result<u64, BundleError> {
    let total: u64 = entries
        .values()
        .map(|s| if let Source::Disk(_, _, n) = s { *n } else { 0 })
        .sum();
    let mut done = 0u64;
    let fill = |w: &mut dyn Write| {
        let mut b = tar::Builder::new(w);
        let mut head: Vec<(&str, &[u8])> = vec![(super::MANIFEST, manifest)];
        head.extend(envelope.map(|e| (super::ENVELOPE, e)));
        for (name, bytes) in head {
            b.append_data(&mut header(bytes.len() as u64, false), name, bytes)
                .map_err(io_err(dest))?;
        }
        for (path, src) in entries {
            match src {
                Source::Dir => b
                    .append_data(&mut header(0, true), path, io::empty())
                    .map_err(io_err(dest))?,
                Source::Bytes(bytes) => b
                    .append_data(&mut header(bytes.len() as u64, false), path, &bytes[..])
                    .map_err(io_err(dest))?,
                Source::Disk(p, hex, size) => {
                    append_checked(&mut b, path, p, hex, *size)?;
                    done += size;
                    progress(format!(
                        "writing: {} of {} MB",
                        done / 1_000_000,
                        total / 1_000_000
                    ));
                }
            }
        }
        b.into_inner().map_err(io_err(dest))?;
        Ok(())
    };
    crate::fsutil::write_replacing(dest, fill, |p, e| io_err(p)(e))
}

/// Stream `file` into the tar as `path`, hashing it on the way; refuse it
/// when it is not the `hex` and `size` the manifest lists.
fn append_checked<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    file: &Path,
    hex: &str,
    size: u64,
) -> Result<(), BundleError> {
    let f = std::fs::File::open(file).map_err(io_err(file))?;
    let mut r = HashReader {
        inner: io::BufReader::new(f).take(size),
        h: crate::digest::HashWriter::new(io::sink()),
    };
    b.append_data(&mut header(size, false), path, &mut r)
        .map_err(io_err(file))?;
    let (_, got, n) = r.h.finish();
    if got != hex || n != size {
        return Err(BundleError::Output {
            path: file.into(),
            reason: format!(
                "changed since it was listed: {n} bytes hashing to sha256:{got}, not {size} bytes of sha256:{hex}; run `imgforge fsck --out` and build again"
            ),
        });
    }
    Ok(())
}

/// A reader that hashes what passes through it.
pub(crate) struct HashReader<R> {
    pub inner: R,
    pub h: crate::digest::HashWriter<io::Sink>,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.write_all(&buf[..n])?;
        Ok(n)
    }
}
