//! `imgforge bundle install FILE --to REGISTRY[/NAMESPACE]`: verify the
//! whole bundle, then put its images into the site's registry, each into
//! `NAMESPACE/<name>`, digests unchanged, on the client `push` uses.
//!
//! In order, and nothing written before the bundle verified:
//!
//! 1. every blob a delta leaves to its base must be in the registry
//!    already (`HEAD` in the image's repository, then in the bundle's other
//!    repositories): one that is not refuses the install, naming it;
//! 2. blobs, image by image (fewest layers first): one the repository has
//!    is skipped, one another repository of the namespace has is mounted,
//!    the others are uploaded straight from their byte range in the bundle;
//! 3. manifests, by digest;
//! 4. a check that every image's manifest and blobs are present;
//! 5. only then the tags.
//!
//! An interrupted install leaves untagged blobs and manifests at most; the
//! next run skips what arrived.

use super::{BundleError, Image, Verified, VerifyOptions};
use crate::registry::client::{Body, Client};
use crate::registry::site::{self, Connect};
use crate::registry::{Destination, PushError};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Options of [`install`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub verify: VerifyOptions,
    pub connect: Connect,
    /// Blobs uploaded at once.
    pub jobs: usize,
}

/// What happened to one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledImage {
    /// `host/repository:tag`.
    pub reference: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub mounted: usize,
    /// Blobs the repository already had.
    pub skipped: usize,
    /// False when the tag already named this manifest.
    pub tagged: bool,
}

/// What an install did.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub registry: String,
    pub images: Vec<InstalledImage>,
}

impl Installed {
    pub fn to_json(&self) -> serde_json::Value {
        let sum = |f: fn(&InstalledImage) -> u64| self.images.iter().map(f).sum::<u64>();
        serde_json::json!({
            "registry": self.registry,
            "images": self.images.iter().map(|i| serde_json::json!({
                "reference": i.reference,
                "repository": i.repository,
                "tag": i.tag,
                "digest": i.digest,
                "blobsUploaded": i.uploaded,
                "bytesUploaded": i.uploaded_bytes,
                "blobsMounted": i.mounted,
                "blobsSkipped": i.skipped,
                "tagged": i.tagged,
            })).collect::<Vec<_>>(),
            "blobsUploaded": sum(|i| i.uploaded as u64),
            "bytesUploaded": sum(|i| i.uploaded_bytes),
            "blobsMounted": sum(|i| i.mounted as u64),
            "blobsSkipped": sum(|i| i.skipped as u64),
        })
    }
}

/// One image and where it goes.
struct Target<'a> {
    image: &'a Image,
    repo: String,
    tag: String,
}

/// A progress message (`"blobs 3/17, 12 of 40 MB"`), for the caller to show.
pub type OnProgress<'a> = &'a (dyn Fn(String) + Sync);

/// Verify `opts.verify.file`, then install it into the registry.
pub fn install(
    opts: &RegistryOptions,
    progress: OnProgress<'_>,
) -> Result<(Verified, Installed), BundleError> {
    let v = super::verify_with(&opts.verify, progress)?;
    let (dest, client) = site::connect(&opts.connect)?;
    let targets = targets(&v, &dest);
    let known = left_out_holders(opts, &v, &client, &targets)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| BundleError::Install(format!("cannot start upload threads: {e}")))?;
    let up = Uploader {
        file: &opts.verify.file,
        v: &v,
        client: &client,
        known: Mutex::new(known),
        done: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
        total: targets.iter().map(|t| t.image.layers.len() + 1).sum(),
        progress,
    };
    let mut images = Vec::new();
    for t in &targets {
        images.push(pool.install(|| up.image(t))?);
    }
    let manifests = put_manifests(opts, &v, &client, &targets, progress)?;
    check_complete(&client, &targets, progress)?;
    for (t, (img, bytes)) in targets.iter().zip(images.iter_mut().zip(&manifests)) {
        progress(format!("tagging {}:{}", t.repo, t.tag));
        img.tagged = tag(&client, t, bytes)?;
    }
    images.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok((
        v,
        Installed {
            registry: dest.host.clone(),
            images,
        },
    ))
}

/// The images, fewest layers first (the base before the images that
/// mount its layers), each with its repository and tag.
fn targets<'a>(v: &'a Verified, dest: &Destination) -> Vec<Target<'a>> {
    let mut t: Vec<Target> = v
        .manifest
        .images
        .iter()
        .map(|i| {
            let (name, tag) = i
                .reference
                .rsplit_once(':')
                .unwrap_or((&i.reference, "latest"));
            Target {
                image: i,
                repo: dest.repository(name),
                tag: tag.to_string(),
            }
        })
        .collect();
    t.sort_by(|a, b| (a.image.layers.len(), &a.repo).cmp(&(b.image.layers.len(), &b.repo)));
    t
}

/// Where each blob a delta leaves out is (digest → repository), looked up
/// with `HEAD` in the image's repository, then in the bundle's others.
/// Writes nothing; a blob no repository holds refuses the install.
fn left_out_holders(
    opts: &RegistryOptions,
    v: &Verified,
    client: &Client,
    targets: &[Target],
) -> Result<BTreeMap<String, String>, BundleError> {
    let left: std::collections::BTreeSet<&str> = v
        .manifest
        .blobs
        .iter()
        .filter(|b| !b.included)
        .map(|b| b.digest.as_str())
        .collect();
    let mut repos: Vec<&str> = targets.iter().map(|t| t.repo.as_str()).collect();
    repos.sort();
    repos.dedup();
    let mut holders = BTreeMap::new();
    for t in targets {
        for d in t.image.layers.iter().filter(|d| left.contains(d.as_str())) {
            if holders.contains_key(d) {
                continue;
            }
            let order = std::iter::once(t.repo.as_str()).chain(repos.iter().copied());
            let mut found = None;
            for r in order {
                if site::has_blob(client, r, d)? {
                    found = Some(r.to_string());
                    break;
                }
            }
            let Some(r) = found else {
                return Err(BundleError::NotOnRegistry(Box::new(super::NotOnRegistry {
                    path: opts.verify.file.clone(),
                    blob: d.clone(),
                    image: t.image.reference.clone(),
                    base: v
                        .manifest
                        .base
                        .as_ref()
                        .map(|b| b.release.clone())
                        .unwrap_or_default(),
                    registry: opts.connect.destination.clone(),
                    looked: repos.join(", "),
                })));
            };
            holders.insert(d.clone(), r);
        }
    }
    Ok(holders)
}

/// Puts one image's blobs into its repository.
struct Uploader<'a> {
    file: &'a std::path::Path,
    v: &'a Verified,
    client: &'a Client,
    /// Blob digest → a repository known to hold it.
    known: Mutex<BTreeMap<String, String>>,
    done: AtomicUsize,
    bytes: AtomicU64,
    total: usize,
    progress: OnProgress<'a>,
}

/// How one blob got there.
enum Outcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

impl Uploader<'_> {
    fn image(&self, t: &Target) -> Result<InstalledImage, BundleError> {
        let mut blobs: Vec<&String> = std::iter::once(&t.image.config)
            .chain(&t.image.layers)
            .collect();
        blobs.dedup();
        let outcomes: Vec<Outcome> = blobs
            .par_iter()
            .map(|d| self.blob(&t.repo, d))
            .collect::<Result<_, _>>()?;
        let mut i = InstalledImage {
            reference: format!("{}/{}:{}", self.client.host, t.repo, t.tag),
            repository: t.repo.clone(),
            tag: t.tag.clone(),
            digest: t.image.manifest.clone(),
            ..Default::default()
        };
        for o in outcomes {
            match o {
                Outcome::Skipped => i.skipped += 1,
                Outcome::Mounted => i.mounted += 1,
                Outcome::Uploaded(n) => {
                    i.uploaded += 1;
                    i.uploaded_bytes += n;
                }
            }
        }
        Ok(i)
    }

    fn blob(&self, repo: &str, digest: &str) -> Result<Outcome, BundleError> {
        let out = self.place(repo, digest)?;
        self.known
            .lock()
            .expect("known blobs")
            .insert(digest.to_string(), repo.to_string());
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let sent = match out {
            Outcome::Uploaded(b) => self.bytes.fetch_add(b, Ordering::SeqCst) + b,
            _ => self.bytes.load(Ordering::SeqCst),
        };
        (self.progress)(format!(
            "blobs {n}/{}, {} MB uploaded",
            self.total,
            sent / 1_000_000
        ));
        Ok(out)
    }

    fn place(&self, repo: &str, digest: &str) -> Result<Outcome, BundleError> {
        if site::has_blob(self.client, repo, digest)? {
            return Ok(Outcome::Skipped);
        }
        let from = self.known.lock().expect("known blobs").get(digest).cloned();
        if let Some(from) = from.filter(|f| f != repo)
            && site::mount(self.client, repo, &from, digest)?
        {
            return Ok(Outcome::Mounted);
        }
        let path = super::blob_path(digest);
        let (Some(offset), Some(b)) = (
            self.v.offsets.get(&path),
            self.v.manifest.blobs.iter().find(|b| b.digest == digest),
        ) else {
            return Err(PushError::Blob {
                repo: repo.to_string(),
                digest: digest.to_string(),
                size: 0,
                reason: "not in the bundle (left to the base), and the registry could not mount it into this repository".into(),
            }
            .into());
        };
        let body = Body::Part {
            path: self.file.to_path_buf(),
            offset: *offset,
            size: b.size,
        };
        site::upload(self.client, repo, digest, b.size, &body)?;
        Ok(Outcome::Uploaded(b.size))
    }
}

/// Each image's manifest from the bundle (checked again), put by digest.
fn put_manifests(
    opts: &RegistryOptions,
    v: &Verified,
    client: &Client,
    targets: &[Target],
    progress: OnProgress<'_>,
) -> Result<Vec<(Vec<u8>, String)>, BundleError> {
    let mut out = Vec::new();
    for t in targets {
        progress(format!("manifest of {}", t.image.reference));
        let bytes = read_entry(opts, v, &super::blob_path(&t.image.manifest))?;
        let mt = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|m| m["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| crate::image::MEDIA_MANIFEST.to_string());
        let d = &t.image.manifest;
        site::put_manifest(client, &t.repo, d, &mt, &bytes, d)?;
        out.push((bytes, mt));
    }
    Ok(out)
}

/// An entry's bytes, read again from the bundle and checked against the
/// sha256 the (verified) manifest lists.
fn read_entry(opts: &RegistryOptions, v: &Verified, path: &str) -> Result<Vec<u8>, BundleError> {
    let file = &opts.verify.file;
    let refuse = |detail: String| BundleError::Refused {
        path: file.clone(),
        entry: path.to_string(),
        check: "sha256",
        detail,
    };
    let b = v
        .manifest
        .blobs
        .iter()
        .find(|b| b.path() == path)
        .ok_or_else(|| refuse("not listed".into()))?;
    let at = *v.offsets.get(path).ok_or_else(|| refuse("absent".into()))?;
    let mut f = std::fs::File::open(file).map_err(super::io_err(file))?;
    f.seek(SeekFrom::Start(at)).map_err(super::io_err(file))?;
    let mut bytes = Vec::new();
    f.take(b.size.min(4 << 20))
        .read_to_end(&mut bytes)
        .map_err(super::io_err(file))?;
    let got = format!("sha256:{}", crate::digest::sha256_hex(&bytes));
    if got != b.digest {
        return Err(refuse(format!(
            "changed since it was verified: hashes to {got}, not {}",
            b.digest
        )));
    }
    Ok(bytes)
}

/// Every image's manifest and blobs are in its repository.
fn check_complete(
    client: &Client,
    targets: &[Target],
    progress: OnProgress<'_>,
) -> Result<(), BundleError> {
    progress("checking that every blob and manifest is present".into());
    for t in targets {
        let missing = std::iter::once(&t.image.config)
            .chain(&t.image.layers)
            .map(|d| site::has_blob(client, &t.repo, d).map(|ok| (!ok).then_some(d)))
            .find_map(|r| r.transpose());
        if let Some(d) = missing {
            let d = d?;
            return Err(PushError::Blob {
                repo: t.repo.clone(),
                digest: d.clone(),
                size: 0,
                reason: "missing after the upload: no tag written".into(),
            }
            .into());
        }
        let accept = crate::image::MEDIA_MANIFEST;
        if site::resolve(client, &t.repo, &t.image.manifest, accept)?.is_none() {
            return Err(PushError::Manifest {
                repo: t.repo.clone(),
                tag: t.image.manifest.clone(),
                reason: "missing after it was put: no tag written".into(),
            }
            .into());
        }
    }
    Ok(())
}

/// Point the tag at the manifest, unless it already does.
fn tag(client: &Client, t: &Target, (bytes, mt): &(Vec<u8>, String)) -> Result<bool, BundleError> {
    let d = &t.image.manifest;
    if site::resolve(client, &t.repo, &t.tag, mt)?.as_deref() == Some(d.as_str()) {
        return Ok(false);
    }
    site::put_manifest(client, &t.repo, &t.tag, mt, bytes, d)?;
    Ok(true)
}
