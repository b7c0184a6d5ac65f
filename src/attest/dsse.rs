//! DSSE envelopes (Dead Simple Signing Envelope, v1) signed with a key the
//! user gives: PKCS#8 PEM, Ed25519 or ECDSA P-256 (RustCrypto's
//! `ed25519-dalek` and `p256`).
//!
//! The signature covers `PAE(payloadType, payload)` =
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`. Both
//! algorithms are deterministic (Ed25519 by design, P-256 with RFC 6979
//! nonces), so the same statement and key give the same envelope. ECDSA
//! signatures are DER-encoded, as the in-toto reference implementation
//! (securesystemslib) expects. The `keyid` is the sha256 of the public
//! key's SubjectPublicKeyInfo DER.

use super::AttestError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::path::Path;

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";

/// Pre-authentication encoding of DSSE v1.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A private key that signs envelopes.
pub enum SigningKey {
    /// Ed25519.
    Ed25519(Box<ed25519_dalek::SigningKey>),
    /// ECDSA over P-256 with SHA-256.
    P256(Box<p256::ecdsa::SigningKey>),
}

/// A public key that verifies envelopes.
#[derive(Debug, Clone)]
pub enum VerifyingKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// ECDSA over P-256 with SHA-256.
    P256(p256::ecdsa::VerifyingKey),
}

fn read_pem(path: &Path) -> Result<String, AttestError> {
    std::fs::read_to_string(path).map_err(|source| AttestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl SigningKey {
    /// Read a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem_file(path: &Path) -> Result<Self, AttestError> {
        use pkcs8::DecodePrivateKey;
        let pem = read_pem(path)?;
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem) {
            return Ok(SigningKey::Ed25519(Box::new(k)));
        }
        match p256::ecdsa::SigningKey::from_pkcs8_pem(&pem) {
            Ok(k) => Ok(SigningKey::P256(Box::new(k))),
            Err(e) => Err(AttestError::Key {
                path: path.to_path_buf(),
                reason: format!("not a PKCS#8 PEM Ed25519 or ECDSA P-256 private key ({e})"),
            }),
        }
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::Ed25519(k) => VerifyingKey::Ed25519(k.verifying_key()),
            SigningKey::P256(k) => VerifyingKey::P256(*k.verifying_key()),
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match self {
            SigningKey::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            SigningKey::P256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&**k, msg);
                sig.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl VerifyingKey {
    /// Read a SubjectPublicKeyInfo PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem_file(path: &Path) -> Result<Self, AttestError> {
        use pkcs8::DecodePublicKey;
        let pem = read_pem(path)?;
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem) {
            return Ok(VerifyingKey::Ed25519(k));
        }
        match p256::ecdsa::VerifyingKey::from_public_key_pem(&pem) {
            Ok(k) => Ok(VerifyingKey::P256(k)),
            Err(e) => Err(AttestError::Key {
                path: path.to_path_buf(),
                reason: format!("not a PEM Ed25519 or ECDSA P-256 public key ({e})"),
            }),
        }
    }

    /// sha256 (hex) of the SubjectPublicKeyInfo DER.
    pub fn keyid(&self) -> String {
        use pkcs8::EncodePublicKey;
        let der = match self {
            VerifyingKey::Ed25519(k) => k.to_public_key_der(),
            VerifyingKey::P256(k) => k.to_public_key_der(),
        };
        // Encoding a valid in-memory key cannot fail.
        let der = der.map(|d| d.as_bytes().to_vec()).unwrap_or_default();
        crate::digest::sha256_hex(&der)
    }

    /// The algorithm's name, as securesystemslib calls it.
    pub fn scheme(&self) -> &'static str {
        match self {
            VerifyingKey::Ed25519(_) => "ed25519",
            VerifyingKey::P256(_) => "ecdsa-sha2-nistp256",
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            VerifyingKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_strict(msg, &s).is_ok()),
            VerifyingKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| p256::ecdsa::signature::Verifier::verify(k, msg, &s).is_ok()),
        }
    }
}

/// The DSSE envelope of `payload`, signed by `key`.
pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Value {
    let sig = key.sign(&pae(payload_type, payload));
    json!({
        "payloadType": payload_type,
        "payload": B64.encode(payload),
        "signatures": [{"keyid": key.verifying_key().keyid(), "sig": B64.encode(sig)}],
    })
}

/// Check an envelope with `key`; the payload type and payload when one
/// signature verifies. `what` names the envelope in errors.
pub fn open(
    envelope: &Value,
    key: &VerifyingKey,
    what: &Path,
) -> Result<(String, Vec<u8>), AttestError> {
    let bad = |reason: &str| AttestError::Envelope {
        path: what.to_path_buf(),
        reason: reason.to_string(),
    };
    let payload_type = envelope["payloadType"]
        .as_str()
        .ok_or_else(|| bad("no payloadType"))?;
    let payload = envelope["payload"]
        .as_str()
        .ok_or_else(|| bad("no payload"))
        .and_then(|p| B64.decode(p).map_err(|_| bad("the payload is not base64")))?;
    let sigs = envelope["signatures"]
        .as_array()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("no signatures"))?;
    let msg = pae(payload_type, &payload);
    let ok = sigs.iter().any(|s| {
        s["sig"]
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|sig| key.verify(&msg, &sig))
    });
    if !ok {
        return Err(AttestError::BadSignature {
            path: what.to_path_buf(),
            keyid: key.keyid(),
            signed_by: sigs
                .iter()
                .filter_map(|s| s["keyid"].as_str())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok((payload_type.to_string(), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_specification_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn signatures_verify_and_detect_one_changed_byte() {
        let keys = [
            SigningKey::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))),
            SigningKey::P256(Box::new(
                p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap(),
            )),
        ];
        for k in &keys {
            let env = sign(IN_TOTO_PAYLOAD, b"{\"a\":1}", k);
            assert_eq!(env, sign(IN_TOTO_PAYLOAD, b"{\"a\":1}", k), "deterministic");
            let vk = k.verifying_key();
            let (t, p) = open(&env, &vk, Path::new("e")).unwrap();
            assert_eq!(
                (t.as_str(), p.as_slice()),
                (IN_TOTO_PAYLOAD, &b"{\"a\":1}"[..])
            );
            let mut bad = env.clone();
            bad["payload"] = json!(B64.encode(b"{\"a\":2}"));
            let e = open(&bad, &vk, Path::new("e")).unwrap_err();
            assert!(matches!(e, AttestError::BadSignature { .. }), "{e}");
        }
    }
}
