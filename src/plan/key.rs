//! Step keys: the sha256 of a step's inputs as canonical JSON, salted with
//! the plan format, imgforge's version and the digest of the sources it was
//! built from.
//!
//! A key never reaches an output: it only names a result in the
//! [`StepStore`](super::store::StepStore). The source digest (computed by
//! `build.rs` over the manifests, the lock file and `src/` of each crate)
//! means an imgforge built from other sources never reuses results an
//! older one made, even when a developer forgot to bump [`FORMAT`], while
//! two builds of the same sources (another runner, a reinstall, a rebuilt
//! binary) share every result: nothing of where or when the binary was
//! made enters a key. The outputs themselves never depend on the salt.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Bumped whenever a step's output for the same inputs would change.
pub const FORMAT: u32 = 1;

/// What every key is salted with.
pub fn salt() -> &'static str {
    static SALT: OnceLock<String> = OnceLock::new();
    SALT.get_or_init(|| {
        format!(
            "imgforge {} plan {FORMAT} source {}",
            env!("CARGO_PKG_VERSION"),
            env!("IMGFORGE_SOURCE_DIGEST")
        )
    })
}

/// The key of step `kind` with `inputs`: 64 hex digits.
pub fn key(kind: &str, inputs: &Value) -> String {
    let doc = serde_json::json!({ "kind": kind, "salt": salt(), "inputs": inputs });
    hex::encode(Sha256::digest(crate::json::to_canonical(&doc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_ignore_object_order_and_follow_every_input() {
        let a = key("layer", &json!({"a": 1, "b": [1, 2]}));
        let b = key("layer", &json!({"b": [1, 2], "a": 1}));
        assert_eq!(a, b);
        assert_ne!(a, key("layer", &json!({"a": 1, "b": [2, 1]})));
        assert_ne!(a, key("configure", &json!({"a": 1, "b": [1, 2]})));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn the_salt_names_the_sources_not_the_binary_file() {
        let s = salt();
        let digest = s.rsplit(' ').next().unwrap();
        assert!(s.starts_with(&format!(
            "imgforge {} plan {FORMAT} source ",
            env!("CARGO_PKG_VERSION")
        )));
        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
