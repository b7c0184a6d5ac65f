//! Build provenance: an in-toto Statement v1 with a SLSA provenance v1
//! predicate per image, optionally signed into a DSSE envelope.
//!
//! [`write_all`] is the build pipeline's entry point. For every image it
//! writes, under the OCI output directory:
//!
//! ```text
//! attest/<image>.provenance.json       the statement (canonical JSON): subject =
//!                                      the image manifest digest; recipe, base
//!                                      recipe and lock digests, every locked
//!                                      .deb (purl + sha256), imgforge version,
//!                                      build parameters
//! attest/<image>.provenance.dsse.json  the same statement in a DSSE envelope
//!                                      signed with --sign-key (only then)
//! ```
//!
//! Then [`referrers`] attaches the SBOMs and the provenance to each image
//! in the layout as OCI 1.1 artifact manifests (`subject` + `artifactType`).
//!
//! No time, host name or machine path goes in: paths are relative to the
//! recipe tree's parent (`recipes/hello.toml`), so two builds of the same
//! inputs write the same bytes (signatures included: both algorithms are
//! deterministic). [`verify`] checks envelopes offline with a public key.

pub mod dsse;
pub mod referrers;
pub mod verify;

use crate::image::WrittenImage;
use crate::recipe::Tree;
use crate::resolve::Lock;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type imgforge's provenance describes.
pub const BUILD_TYPE: &str = "https://imgforge.invalid/buildtypes/debian-image/v1";

/// Errors of provenance and signing.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// Reading or writing a file failed.
    #[error(
        "{path}: {source}\nhelp: check that the file exists and is readable (outputs: that the directory is writable)"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file is not a supported key.
    #[error(
        "{path}: {reason}\nhelp: give a PKCS#8 PEM key, e.g. `openssl genpkey -algorithm ed25519 -out key.pem` (private) and `openssl pkey -in key.pem -pubout -out key.pub.pem` (public); ECDSA P-256 keys work too"
    )]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An envelope or statement is malformed.
    #[error(
        "{path}: {reason}\nhelp: give a DSSE envelope written by `imgforge build --sign-key` (attest/*.dsse.json), or the build output directory"
    )]
    Envelope {
        /// The envelope.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No signature of the envelope verifies with the key.
    #[error(
        "{path}: the signature does not verify with key {keyid} (signed by {signed_by:?})\nhelp: the statement was changed after it was signed, or signed with another key: do not trust it; rebuild, or verify with the public key of the key that signed it"
    )]
    BadSignature {
        /// The envelope.
        path: PathBuf,
        /// The key tried.
        keyid: String,
        /// Key ids the envelope names.
        signed_by: Vec<String>,
    },
    /// The statement does not match the build output.
    #[error(
        "{path}: {reason}\nhelp: the envelope belongs to another build; verify it against the output it came with"
    )]
    Mismatch {
        /// The envelope.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A directory holds no signed envelope.
    #[error(
        "{path}: no attest/*.dsse.json envelope\nhelp: build with `--sign-key KEY.pem` to sign the provenance"
    )]
    NothingToVerify {
        /// The directory.
        path: PathBuf,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AttestError + '_ {
    move |source| AttestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Options of [`write_all`].
pub struct AttestOptions<'a> {
    /// The OCI output (staging) directory; files go under `attest/`.
    pub layout: &'a Path,
    /// The recipes.
    pub tree: &'a Tree,
    /// The lock the build used.
    pub lock: &'a Lock,
    /// The images written (the base first).
    pub images: &'a [WrittenImage],
    /// Build parameters that shape the output (compression, epoch...).
    pub parameters: BTreeMap<String, Value>,
    /// Sign with this PKCS#8 PEM private key.
    pub sign_key: Option<&'a Path>,
}

/// The build parameters recorded in the provenance (what shapes the output
/// bytes besides the recipes and the lock).
pub fn parameters(
    compression: &crate::layer::Compression,
    source_date_epoch: i64,
) -> BTreeMap<String, Value> {
    let (name, level) = match compression {
        crate::layer::Compression::Gzip(l) => ("gzip", i64::from(*l)),
        crate::layer::Compression::Zstd(l) => ("zstd", i64::from(*l)),
    };
    BTreeMap::from([
        ("compression".to_string(), json!(name)),
        ("compressionLevel".to_string(), json!(level)),
        ("sourceDateEpoch".to_string(), json!(source_date_epoch)),
    ])
}

/// What [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestSummary {
    /// Files written, relative to the layout, sorted.
    pub files: Vec<PathBuf>,
    /// The signing key's id, when signed.
    pub keyid: Option<String>,
    /// The artifact manifests attached to the images in the layout.
    pub referrers: Vec<referrers::Referrer>,
}

/// One line for the build's progress output.
pub fn describe(s: &AttestSummary) -> String {
    match &s.keyid {
        Some(k) => format!(
            "in-toto SLSA provenance, DSSE-signed (key {})",
            &k[..16.min(k.len())]
        ),
        None => {
            "in-toto SLSA provenance, unsigned (no --sign-key: statements only, no envelope)".into()
        }
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// A path as recorded: relative to the recipe tree's parent, `/`-separated.
fn recorded_path(tree: &Tree, p: &Path) -> String {
    let root = lexical(tree.dir.parent().unwrap_or(Path::new("")));
    let p = lexical(p);
    let rel = p
        .strip_prefix(&root)
        .ok()
        .filter(|r| !r.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| p.file_name().map(PathBuf::from).unwrap_or_default());
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn file_dependency(tree: &Tree, p: &Path) -> Result<Value, AttestError> {
    let bytes = std::fs::read(p).map_err(io_err(p))?;
    Ok(json!({
        "uri": recorded_path(tree, p),
        "digest": {"sha256": crate::digest::sha256_hex(&bytes)},
    }))
}

/// Locked packages of `image` (base and image runtime, build stage) as
/// resolved dependencies: purl, sha256 of the `.deb`, and the stage.
fn package_dependencies(opts: &AttestOptions, image: &str, distro: &str) -> Vec<Value> {
    let base = &opts.tree.base.name;
    let mut stages = vec![(base.as_str(), "runtime")];
    if image != base {
        stages.extend([(image, "runtime"), (image, "build")]);
    }
    let mut out = BTreeMap::new();
    for (img, stage) in stages {
        for p in opts
            .lock
            .get(img, stage)
            .map(|l| l.packages.as_slice())
            .unwrap_or_default()
        {
            let uri = crate::sbom::purl(&p.name, &p.version, &p.architecture, distro);
            let key = (uri.clone(), stage);
            out.entry(key).or_insert_with(|| {
                json!({
                    "uri": uri,
                    "name": p.name,
                    "digest": {"sha256": p.sha256},
                    "annotations": {"stage": stage, "source": format!("{} {}", p.source, p.source_version)},
                })
            });
        }
    }
    out.into_values().collect()
}

/// The provenance statement of one image.
pub fn statement(opts: &AttestOptions, img: &WrittenImage) -> Result<Value, AttestError> {
    let tree = opts.tree;
    let recipe = std::iter::once(&tree.base)
        .chain(&tree.images)
        .find(|r| r.name == img.name)
        .unwrap_or(&tree.base);
    let mut deps = vec![
        file_dependency(tree, &recipe.file)?,
        file_dependency(tree, &tree.lock_path())?,
    ];
    if recipe.file != tree.base.file {
        deps.push(file_dependency(tree, &tree.base.file)?);
    }
    deps.extend(package_dependencies(opts, &img.name, &tree.source.distro));
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": img.reference(), "digest": {"sha256": img.manifest.hex()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": recorded_path(tree, &recipe.file),
                    "base": recorded_path(tree, &tree.base.file),
                    "lock": recorded_path(tree, &tree.lock_path()),
                    "image": img.reference(),
                },
                "internalParameters": internal_parameters(opts),
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": BUILD_TYPE.replace("buildtypes/debian-image/v1", "builder"), "version": {"imgforge": env!("CARGO_PKG_VERSION")}},
                "byproducts": [{"name": "config", "digest": {"sha256": img.config.hex()}}],
            },
        },
    }))
}

fn internal_parameters(opts: &AttestOptions) -> BTreeMap<String, Value> {
    let mut p = opts.parameters.clone();
    p.insert("architecture".into(), json!(opts.tree.source.arch));
    p.insert("distro".into(), json!(opts.tree.source.distro));
    p
}

fn write(
    layout: &Path,
    rel: &Path,
    bytes: &[u8],
    files: &mut Vec<PathBuf>,
) -> Result<(), AttestError> {
    let path = layout.join(rel);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    std::fs::write(&path, bytes).map_err(io_err(&path))?;
    files.push(rel.to_path_buf());
    Ok(())
}

/// Write the statement (and, with a key, the signed envelope) of every image.
pub fn write_all(opts: &AttestOptions) -> Result<AttestSummary, AttestError> {
    let key = opts
        .sign_key
        .map(dsse::SigningKey::from_pem_file)
        .transpose()?;
    let mut files = Vec::new();
    for img in opts.images {
        let stem = crate::sbom::safe_name(&img.name);
        let payload = crate::json::to_canonical(&statement(opts, img)?);
        let dir = Path::new("attest");
        write(
            opts.layout,
            &dir.join(format!("{stem}.provenance.json")),
            &payload,
            &mut files,
        )?;
        if let Some(k) = &key {
            let env = dsse::sign(dsse::IN_TOTO_PAYLOAD, &payload, k);
            write(
                opts.layout,
                &dir.join(format!("{stem}.provenance.dsse.json")),
                &crate::json::to_canonical_pretty(&env),
                &mut files,
            )?;
        }
    }
    files.sort();
    let referrers = referrers::write_layout(opts.layout, opts.images)?;
    Ok(AttestSummary {
        files,
        keyid: key.map(|k| k.verifying_key().keyid()),
        referrers,
    })
}
