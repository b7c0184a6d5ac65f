//! `imgforge attest verify --key PUB.pem PATH`: offline verification of the
//! signed provenance. PATH is one DSSE envelope, or a build output
//! directory (every `attest/*.dsse.json`, each also checked against the
//! layout: the subject manifest is in `blobs/` and the unsigned statement
//! beside it is the signed payload).

use super::dsse::{self, VerifyingKey};
use super::{AttestError, PREDICATE_TYPE, STATEMENT_TYPE, io_err};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One verified statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The envelope.
    pub envelope: PathBuf,
    /// `name` and `sha256:<hex>` of each subject.
    pub subjects: Vec<(String, String)>,
    /// The key that verified it.
    pub keyid: String,
}

fn mismatch(path: &Path, reason: String) -> AttestError {
    AttestError::Mismatch {
        path: path.to_path_buf(),
        reason,
    }
}

/// Verify one envelope file; `layout`, when given, is the output it belongs to.
pub fn envelope(
    path: &Path,
    key: &VerifyingKey,
    layout: Option<&Path>,
) -> Result<Verified, AttestError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let env: Value = serde_json::from_slice(&bytes).map_err(|e| AttestError::Envelope {
        path: path.to_path_buf(),
        reason: format!("not JSON: {e}"),
    })?;
    let (payload_type, payload) = dsse::open(&env, key, path)?;
    if payload_type != dsse::IN_TOTO_PAYLOAD {
        return Err(mismatch(
            path,
            format!("payload type {payload_type:?} is not an in-toto statement"),
        ));
    }
    let st: Value = serde_json::from_slice(&payload)
        .map_err(|e| mismatch(path, format!("the signed payload is not JSON: {e}")))?;
    if st["_type"] != STATEMENT_TYPE || st["predicateType"] != PREDICATE_TYPE {
        return Err(mismatch(
            path,
            "not an in-toto v1 SLSA provenance v1 statement".into(),
        ));
    }
    let subjects: Vec<(String, String)> = st["subject"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| {
                    Some((
                        x["name"].as_str()?.to_string(),
                        format!("sha256:{}", x["digest"]["sha256"].as_str()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if subjects.is_empty() {
        return Err(mismatch(path, "the statement has no sha256 subject".into()));
    }
    if let Some(layout) = layout {
        check_layout(path, layout, &payload, &subjects)?;
    }
    Ok(Verified {
        envelope: path.to_path_buf(),
        subjects,
        keyid: key.keyid(),
    })
}

fn check_layout(
    path: &Path,
    layout: &Path,
    payload: &[u8],
    subjects: &[(String, String)],
) -> Result<(), AttestError> {
    for (name, digest) in subjects {
        let blob = layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        if !blob.is_file() {
            return Err(mismatch(
                path,
                format!("subject {name} {digest} is not in {}", layout.display()),
            ));
        }
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let unsigned = path.with_file_name(name.replace(".dsse.json", ".json"));
    if unsigned.is_file() {
        let b = std::fs::read(&unsigned).map_err(io_err(&unsigned))?;
        if b != payload {
            return Err(mismatch(
                path,
                format!("{} differs from the signed statement", unsigned.display()),
            ));
        }
    }
    Ok(())
}

/// Verify `path` (an envelope, or an output directory) with the public key
/// in `key_file`.
pub fn verify(path: &Path, key_file: &Path) -> Result<Vec<Verified>, AttestError> {
    let key = VerifyingKey::from_pem_file(key_file)?;
    if !path.is_dir() {
        return Ok(vec![envelope(path, &key, None)?]);
    }
    let dir = path.join("attest");
    let mut found: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".dsse.json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    if found.is_empty() {
        return Err(AttestError::NothingToVerify {
            path: path.to_path_buf(),
        });
    }
    found
        .iter()
        .map(|e| envelope(e, &key, Some(path)))
        .collect()
}
