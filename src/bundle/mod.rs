//! Courier bundles for sites without network: one deterministic tar that
//! `docker load` reads (`manifest.json` + blobs), that is an OCI layout
//! (`oci-layout`, `index.json`, the same `blobs/sha256/*` files), and that
//! carries the build's SBOMs, legal reports and provenance, listed in a
//! versioned bundle manifest (`imgforge-bundle.json`, optionally signed
//! into a DSSE envelope, `imgforge-bundle.dsse.json`).
//!
//! ```text
//! imgforge-bundle.json        first entry: every blob and file, sha256 and size
//! imgforge-bundle.dsse.json   second, with --sign-key: DSSE over the manifest bytes
//! attest/ blobs/ imgforge-record.json index.json legal/ manifest.json
//! oci-layout sbom/            then every other entry, sorted by path
//! ```
//!
//! A delta (`--since PREVIOUS`) leaves out the layers the previous release
//! listed; its manifest names that release and the digest of its manifest.
//! [`write`] makes a bundle, [`verify`] checks one offline, streaming (the
//! manifest comes first, so each entry is checked as it passes).

pub mod install;
pub mod inventory;
pub mod registry;
pub mod report;
pub mod verify;
pub mod write;

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

pub use verify::{Verified, VerifyOptions, verify, verify_with};
pub use write::{BundleOptions, Written, write, write_with};

/// The manifest's entry name (the first entry of a bundle).
pub const MANIFEST: &str = "imgforge-bundle.json";
/// The signed manifest's entry name (the second, when signed).
pub const ENVELOPE: &str = "imgforge-bundle.dsse.json";
/// The DSSE payload type of a signed bundle manifest.
pub const PAYLOAD_TYPE: &str = "application/vnd.imgforge.bundle.manifest.v1+json";
/// The format version this imgforge writes and reads.
pub const VERSION: u32 = 1;
/// The largest manifest or envelope read into memory.
const MAX_MANIFEST: u64 = 64 << 20;

/// The bundle manifest (`imgforge-bundle.json`); see `docs/bundle.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    /// [`VERSION`].
    pub bundle_version: u32,
    /// The release this bundle carries.
    pub release: String,
    /// For a delta: the release it applies on top of.
    pub base: Option<Base>,
    /// By reference (`name:tag`).
    pub images: Vec<Image>,
    /// Every blob the images use, by digest; `included` is false for a
    /// blob a delta leaves to its base.
    pub blobs: Vec<Blob>,
    /// Every other file entry (layout, docker manifest, SBOMs, reports), by path.
    pub files: Vec<File>,
}

/// The release a delta applies on top of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Base {
    pub release: String,
    /// `sha256:<hex>` of the base bundle's `imgforge-bundle.json` bytes.
    pub manifest: String,
}

/// One image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    /// `name:tag`.
    pub reference: String,
    /// `sha256:<hex>` of the OCI image manifest.
    pub manifest: String,
    pub config: String,
    /// Bottom first.
    pub layers: Vec<String>,
}

/// One blob (entry `blobs/sha256/<hex>` when included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub included: bool,
}

/// One other file entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct File {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

impl Blob {
    /// The blob's entry path in the bundle.
    pub fn path(&self) -> String {
        blob_path(&self.digest)
    }
}

/// `blobs/sha256/<hex>` of a `sha256:<hex>` digest.
pub fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

impl Manifest {
    /// The manifest's bytes as written (canonical JSON, indented).
    pub fn to_bytes(&self) -> Vec<u8> {
        let v = serde_json::to_value(self).expect("the manifest serializes");
        crate::json::to_canonical_pretty(&v)
    }

    /// Bytes and blobs included, and blobs left to the base.
    pub fn totals(&self) -> (u64, usize, usize) {
        let bytes = self.blobs.iter().filter(|b| b.included).map(|b| b.size);
        let inc = self.blobs.iter().filter(|b| b.included).count();
        (bytes.sum(), inc, self.blobs.len() - inc)
    }
}

/// A blob a delta leaves to its base release, missing from the registry
/// it is installed to (boxed in [`BundleError`]: it is large).
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: blob {blob} (a layer of {image}) is left to the base release {base}, and {registry} does not hold it (looked in {looked}); nothing was written\nhelp: a delta installs only on a registry that holds its base release: install release {base} there first (`imgforge bundle install BASE --to {registry}`), or ask the vendor for a full bundle"
)]
pub struct NotOnRegistry {
    pub path: PathBuf,
    pub blob: String,
    pub image: String,
    pub base: String,
    pub registry: String,
    pub looked: String,
}

/// Errors of writing and verifying bundles. A [`BundleError::Refused`]
/// (or a bad signature) is a bundle that must not be installed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "{path}: {source}\nhelp: check that the file exists and is readable (outputs: that the directory is writable and has room)"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: {reason}\nhelp: give the output directory of `imgforge build` (an OCI layout with index.json)"
    )]
    Output { path: PathBuf, reason: String },
    #[error(
        "{path}: {reason}\nhelp: --since takes a bundle written by `imgforge bundle`, its imgforge-bundle.json, the imgforge-record.json of a build, or a site inventory (`imgforge bundle inventory`)"
    )]
    Previous { path: PathBuf, reason: String },
    #[error(
        "{path}: entry {entry}: {check}: {detail}\nhelp: the bundle is damaged, truncated or was changed after it was written: do not install it; carry it again and compare its sha256 with the vendor's"
    )]
    Refused {
        path: PathBuf,
        entry: String,
        check: &'static str,
        detail: String,
    },
    #[error(
        "{path}: {detail}\nhelp: a delta installs only on the release it was made against: give that release's bundle (or its imgforge-bundle.json) as --base, or ask the vendor for a full bundle"
    )]
    WrongBase { path: PathBuf, detail: String },
    #[error(
        "{path}: {reason}\nhelp: --sources takes the directory `imgforge sources OUT -o DIR` wrote (not a .tar)"
    )]
    Sources { path: PathBuf, reason: String },
    #[error(transparent)]
    Signature(#[from] crate::attest::AttestError),
    #[error("{0}")]
    Install(String),
    #[error(transparent)]
    NotOnRegistry(Box<NotOnRegistry>),
    #[error(transparent)]
    Registry(#[from] crate::registry::PushError),
}

impl BundleError {
    /// A bundle refused by verification (exit code 3), not a failure to run.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BundleError::Refused { .. }
                | BundleError::WrongBase { .. }
                | BundleError::NotOnRegistry(_)
                | BundleError::Signature(_)
        )
    }
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A previous release's manifest and the `sha256:` of its bytes, from a
/// bundle (its first entry) or an `imgforge-bundle.json` file.
pub fn read_previous(path: &Path) -> Result<(Manifest, String), BundleError> {
    let bad = |reason: String| BundleError::Previous {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut first = [0u8; 1];
    let n = f.read(&mut first).map_err(io_err(path))?;
    drop(f);
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let bytes = if n == 1 && first[0] == b'{' {
        let mut b = Vec::new();
        f.take(MAX_MANIFEST)
            .read_to_end(&mut b)
            .map_err(io_err(path))?;
        b
    } else {
        let mut ar = tar::Archive::new(std::io::BufReader::new(f));
        let mut entries = ar.entries().map_err(io_err(path))?;
        let e = entries
            .next()
            .ok_or_else(|| bad("an empty file".into()))?
            .map_err(|e| bad(format!("not a tar archive ({e})")))?;
        let name = e.path_bytes().into_owned();
        if name != MANIFEST.as_bytes() || e.size() > MAX_MANIFEST {
            return Err(bad(format!("its first entry is not {MANIFEST}")));
        }
        let mut b = Vec::new();
        { e }.read_to_end(&mut b).map_err(io_err(path))?;
        b
    };
    let digest = format!("sha256:{}", crate::digest::sha256_hex(&bytes));
    if let Some(m) = of_record(&bytes, &digest) {
        return Ok((m, digest));
    }
    let m = parse(&bytes).map_err(bad)?;
    Ok((m, digest))
}

/// A build record (`imgforge-record.json`, `record_version` 1: per image
/// its manifest, config and layers with sizes) as the manifest of the
/// release it built: every blob held (a config's or manifest's size is
/// not recorded, and is 0). `None` when the bytes are not a record.
fn of_record(bytes: &[u8], digest: &str) -> Option<Manifest> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("record_version")?.as_u64()? != 1 {
        return None;
    }
    let mut blobs = std::collections::BTreeMap::new();
    let mut images = Vec::new();
    for (r, i) in v["images"].as_object()? {
        let manifest = i["manifest"].as_str()?.to_string();
        let config = i["config"].as_str()?.to_string();
        blobs.entry(manifest.clone()).or_insert(0);
        blobs.entry(config.clone()).or_insert(0);
        let mut layers = Vec::new();
        for l in i["layers"].as_array()? {
            let d = l["digest"].as_str()?.to_string();
            blobs.insert(d.clone(), l["size"].as_u64()?);
            layers.push(d);
        }
        images.push(Image {
            reference: r.clone(),
            manifest,
            config,
            layers,
        });
    }
    Some(Manifest {
        bundle_version: VERSION,
        release: format!("build record {digest}"),
        base: None,
        images,
        blobs: blobs
            .into_iter()
            .map(|(digest, size)| Blob {
                digest,
                size,
                included: true,
            })
            .collect(),
        files: Vec::new(),
    })
}

/// The layers of `images` that a site holding `base` lacks by chain: an
/// image's layers from the first one whose stack (it and every layer
/// below it) no base image has. Docker skips a layer by chain ID, so a
/// layer the base holds on top of other layers must still travel.
pub fn needed_layers(images: &[Image], base: &[Image]) -> std::collections::BTreeSet<String> {
    let stacks: std::collections::BTreeSet<&[String]> = base
        .iter()
        .flat_map(|i| (1..=i.layers.len()).map(|n| &i.layers[..n]))
        .collect();
    needed_by(images, |i, n| stacks.contains(&i.layers[..n]))
}

/// The layers of `images` above the highest stack `held(image, n)` (its
/// `n` bottom layers) the site holds.
pub fn needed_by(
    images: &[Image],
    held: impl Fn(&Image, usize) -> bool,
) -> std::collections::BTreeSet<String> {
    let mut needed = std::collections::BTreeSet::new();
    for i in images {
        let top = (0..=i.layers.len())
            .rev()
            .find(|&n| n == 0 || held(i, n))
            .unwrap_or(0);
        needed.extend(i.layers[top..].iter().cloned());
    }
    needed
}

/// Parse manifest bytes; refuses another format version.
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("bundleVersion").and_then(|x| x.as_u64()) {
        Some(n) if n == u64::from(VERSION) => {}
        Some(n) => {
            return Err(format!(
                "bundle format version {n}; this imgforge reads version {VERSION}"
            ));
        }
        None => return Err("no bundleVersion: not a bundle manifest".into()),
    }
    serde_json::from_value(v).map_err(|e| format!("not a bundle manifest: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(layers: &[&str]) -> Image {
        Image {
            reference: "i:1".into(),
            manifest: "m".into(),
            config: "c".into(),
            layers: layers.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn a_layer_the_base_holds_under_other_layers_still_travels() {
        let base = [image(&["a", "b", "c"]), image(&["a", "d"])];
        let got = |layers: &[&str]| -> Vec<String> {
            needed_layers(&[image(layers)], &base).into_iter().collect()
        };
        assert_eq!(got(&["a", "b", "c"]), Vec::<String>::new());
        assert_eq!(got(&["a", "b", "c", "e"]), ["e"]);
        // b changed: c is the same blob, but on another stack.
        assert_eq!(got(&["a", "x", "c"]), ["c", "x"]);
        assert_eq!(got(&["a", "d", "c"]), ["c"]);
        assert_eq!(got(&["z", "b"]), ["b", "z"]);
    }
}
