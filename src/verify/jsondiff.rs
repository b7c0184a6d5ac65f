//! The first difference between two JSON documents (configs, manifests,
//! `index.json`, SBOMs), as a field path and both values.
//!
//! Object keys are visited in sorted order, array elements by index, so the
//! result is deterministic. A key or element missing on one side is reported
//! with `None` on that side.

use serde_json::Value;

/// The first differing value.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDifference {
    /// `rootfs.diff_ids[1]`, `config.Labels["org.opencontainers.image.title"]`;
    /// `(document)` for the root.
    pub path: String,
    /// `None` when absent on that side.
    pub a: Option<Value>,
    pub b: Option<Value>,
}

fn key_segment(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{k}")
    } else {
        format!("[{}]", serde_json::to_string(k).expect("string serializes"))
    }
}

/// The first difference between `a` and `b`, or `None` when equal.
pub fn diff(a: &Value, b: &Value) -> Option<JsonDifference> {
    walk(a, b, String::new()).map(|mut d| {
        d.path = match d.path.strip_prefix('.') {
            Some(p) => p.to_string(),
            None if d.path.is_empty() => "(document)".into(),
            None => d.path,
        };
        d
    })
}

fn walk(a: &Value, b: &Value, path: String) -> Option<JsonDifference> {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}{}", key_segment(k));
                match (ma.get(k), mb.get(k)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = walk(x, y, p) {
                            return Some(d);
                        }
                    }
                    (x, y) => {
                        return Some(JsonDifference {
                            path: p,
                            a: x.cloned(),
                            b: y.cloned(),
                        });
                    }
                }
            }
            None
        }
        (Value::Array(va), Value::Array(vb)) => {
            for i in 0..va.len().max(vb.len()) {
                let p = format!("{path}[{i}]");
                match (va.get(i), vb.get(i)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = walk(x, y, p) {
                            return Some(d);
                        }
                    }
                    (x, y) => {
                        return Some(JsonDifference {
                            path: p,
                            a: x.cloned(),
                            b: y.cloned(),
                        });
                    }
                }
            }
            None
        }
        (x, y) if x == y => None,
        (x, y) => Some(JsonDifference {
            path,
            a: Some(x.clone()),
            b: Some(y.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_documents() {
        let v = json!({"a": [1, {"b": null}]});
        assert_eq!(diff(&v, &v), None);
    }

    #[test]
    fn nested_paths() {
        let a = json!({"rootfs": {"diff_ids": ["sha256:1", "sha256:2"]}, "z": 1});
        let b = json!({"rootfs": {"diff_ids": ["sha256:1", "sha256:3"]}, "z": 2});
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.path, "rootfs.diff_ids[1]");
        assert_eq!(d.a, Some(json!("sha256:2")));
        assert_eq!(d.b, Some(json!("sha256:3")));
    }

    #[test]
    fn odd_keys_and_missing_values() {
        let a = json!({"Labels": {"org.opencontainers.image.title": "x"}});
        let b = json!({"Labels": {}});
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.path, r#"Labels["org.opencontainers.image.title"]"#);
        assert_eq!(d.b, None);
        let d = diff(&json!([1]), &json!([1, 2])).unwrap();
        assert_eq!((d.path.as_str(), d.a, d.b), ("[1]", None, Some(json!(2))));
        let d = diff(&json!(1), &json!("1")).unwrap();
        assert_eq!(d.path, "(document)");
    }
}
