//! Step keys: the sha256 of a step's inputs as canonical JSON, salted with
//! the plan format and the identity of the running imgforge binary.
//!
//! A key never reaches an output: it only names a result in the
//! [`StepStore`](super::store::StepStore). Salting with the binary (its
//! version, size and modification time) means a rebuilt imgforge never
//! reuses results an older build of it made, even when a developer forgot
//! to bump [`FORMAT`]; the outputs themselves never depend on the salt.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Bumped whenever a step's output for the same inputs would change.
pub const FORMAT: u32 = 1;

fn salt() -> &'static str {
    static SALT: OnceLock<String> = OnceLock::new();
    SALT.get_or_init(|| {
        let exe = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{}:{mtime}", m.len())
            })
            .unwrap_or_default();
        format!(
            "imgforge {} plan {FORMAT} exe {exe}",
            env!("CARGO_PKG_VERSION")
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
}
