//! The verify report: what was compared, and the first difference found.
//!
//! One [`Report`] is rendered either as text for people ([`Report::to_text`])
//! or as canonical JSON for machines ([`Report::to_json`]); both carry the
//! same facts. Side `a` is the first build (or the record given with
//! `--against`), side `b` the second build (or the new build).

use serde::Serialize;
use serde_json::Value;

/// How much was compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Images (index entries).
    pub images: u64,
    /// Distinct layers.
    pub layers: u64,
    /// Tar entries inside those layers.
    pub layer_entries: u64,
    /// Output files (blobs, SBOMs, reports, ...) or record entries.
    pub files: u64,
    /// Bytes compared (side b's sizes).
    pub bytes: u64,
}

/// The kind of object a difference is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Object {
    /// The record itself (`source_date_epoch`) or the set of images.
    Record,
    Image,
    Layer,
    Config,
    Manifest,
    Index,
    /// Any other output file (SBOM, legal report, the record file).
    File,
}

/// What differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// File bytes (sha256 of both).
    Content,
    /// Entry size in the tar header.
    Size,
    /// Permission bits (octal).
    Mode,
    Uid,
    Gid,
    Uname,
    Gname,
    Mtime,
    /// Symlink or hard-link target.
    Link,
    /// Entry type (file, directory, symlink, ...).
    Type,
    /// Entry order in a layer, or an entry present in one layer only.
    Order,
    /// Raw tar header bytes not covered by the fields above.
    Header,
    /// Same entries, different tar bytes outside them (padding, end blocks).
    Padding,
    /// Same uncompressed tar, different compressed bytes.
    Compression,
    /// A JSON value (`path` is the field path).
    Json,
    /// A line of a text file (`path` is `line N`).
    Line,
    /// A byte of a binary file (`path` is `byte N`).
    Byte,
    /// Present on one side only.
    Presence,
    /// Only digests are known (a record without the old blobs).
    Digest,
    SourceDateEpoch,
}

impl Field {
    /// The name used in text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Field::Content => "content",
            Field::Size => "size",
            Field::Mode => "mode",
            Field::Uid => "uid",
            Field::Gid => "gid",
            Field::Uname => "uname",
            Field::Gname => "gname",
            Field::Mtime => "mtime",
            Field::Link => "link",
            Field::Type => "type",
            Field::Order => "order",
            Field::Header => "header",
            Field::Padding => "padding",
            Field::Compression => "compression",
            Field::Json => "json",
            Field::Line => "line",
            Field::Byte => "byte",
            Field::Presence => "presence",
            Field::Digest => "digest",
            Field::SourceDateEpoch => "source_date_epoch",
        }
    }
}

/// The first difference found, down the tree: image, then layer or
/// document, then path inside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `name:tag`, when the difference is inside an image.
    pub image: Option<String>,
    pub object: Object,
    /// The layer's index in the image's manifest (0 = bottom).
    pub layer_index: Option<usize>,
    /// The output file (relative to the output directory) for documents.
    pub file: Option<String>,
    pub digest_a: Option<String>,
    pub digest_b: Option<String>,
    /// Path inside the layer, JSON field path, `line N` or `byte N`.
    pub path: Option<String>,
    pub field: Field,
    /// Side a's value (`null` when absent).
    pub a: Value,
    /// Side b's value (`null` when absent).
    pub b: Value,
    /// Other fields of the same entry that differ too.
    pub also: Vec<Field>,
    /// One sentence for people.
    pub detail: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Difference {
    /// A difference with only the object and field set.
    pub fn new(object: Object, field: Field, a: Value, b: Value, detail: String) -> Self {
        Difference {
            image: None,
            object,
            layer_index: None,
            file: None,
            digest_a: None,
            digest_b: None,
            path: None,
            field,
            a,
            b,
            also: Vec::new(),
            detail,
            hint: None,
        }
    }
}

/// One build verify ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildInfo {
    /// `a` or `b`.
    pub side: String,
    /// The conditions it ran under.
    pub conditions: String,
    pub seconds: f64,
}

/// The whole result of `imgforge verify`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub identical: bool,
    /// `rebuild` (two builds) or `against` (a record).
    pub mode: String,
    /// What side a is.
    pub a: String,
    /// What side b is.
    pub b: String,
    pub builds: Vec<BuildInfo>,
    /// What was compared (up to the difference, when there is one).
    pub compared: Counts,
    pub difference: Option<Difference>,
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(absent)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Bytes as a short human size.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Counts {
    /// `4 images, 5 layers (12034 entries inside layers), 160 files, 19.3 MiB`.
    pub fn summary(&self) -> String {
        format!(
            "{} image(s), {} layer(s) ({} entries inside layers), {} file(s), {}",
            self.images,
            self.layers,
            self.layer_entries,
            self.files,
            human_bytes(self.bytes)
        )
    }
}

impl Report {
    /// Canonical pretty JSON (sorted keys).
    pub fn to_json(&self) -> Vec<u8> {
        let v = serde_json::to_value(self).expect("report serializes");
        crate::json::to_canonical_pretty(&v)
    }

    /// Text for a terminal or a CI log.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("a: {}\nb: {}\n", self.a, self.b));
        for b in &self.builds {
            s.push_str(&format!(
                "build {}: {:.1}s ({})\n",
                b.side, b.seconds, b.conditions
            ));
        }
        match &self.difference {
            None => {
                s.push_str(&format!(
                    "identical: compared {}, bit for bit\n",
                    self.compared.summary()
                ));
            }
            Some(d) => {
                s.push_str("DIFFERENCE (the first one, down the tree):\n");
                let mut where_ = Vec::new();
                if let Some(i) = &d.image {
                    where_.push(format!("image {i}"));
                }
                match (d.object, d.layer_index) {
                    (Object::Layer, Some(n)) => where_.push(format!("layer {n}")),
                    (Object::Layer, None) => where_.push("layer".into()),
                    (Object::Config, _) => where_.push("config".into()),
                    (Object::Manifest, _) => where_.push("manifest".into()),
                    (Object::Index, _) => where_.push("index.json".into()),
                    (Object::Record, _) => where_.push("record".into()),
                    (Object::Image, _) | (Object::File, _) => {}
                }
                if let Some(f) = &d.file {
                    where_.push(format!("file {f}"));
                }
                s.push_str(&format!("  in:     {}\n", where_.join(", ")));
                if d.digest_a.is_some() || d.digest_b.is_some() {
                    s.push_str(&format!(
                        "  digest: a {}\n          b {}\n",
                        d.digest_a.as_deref().unwrap_or("(absent)"),
                        d.digest_b.as_deref().unwrap_or("(absent)")
                    ));
                }
                if let Some(p) = &d.path {
                    s.push_str(&format!("  path:   {p}\n"));
                }
                s.push_str(&format!(
                    "  {} differs: a {}, b {}\n",
                    d.field.name(),
                    show(&d.a),
                    show(&d.b)
                ));
                if !d.also.is_empty() {
                    let also: Vec<&str> = d.also.iter().map(|f| f.name()).collect();
                    s.push_str(&format!("  also differ: {}\n", also.join(", ")));
                }
                s.push_str(&format!("  {}\n", d.detail));
                if let Some(h) = &d.hint {
                    s.push_str(&format!("  help: {h}\n"));
                }
                s.push_str(&format!(
                    "compared before the difference: {}\n",
                    self.compared.summary()
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_names_every_level() {
        let mut d = Difference::new(
            Object::Layer,
            Field::Mode,
            json!("0755"),
            json!("0754"),
            "x".into(),
        );
        d.image = Some("hello:1.0.0".into());
        d.layer_index = Some(1);
        d.path = Some("usr/local/bin/hello".into());
        let r = Report {
            identical: false,
            mode: "rebuild".into(),
            a: "A".into(),
            b: "B".into(),
            builds: vec![],
            compared: Counts::default(),
            difference: Some(d),
        };
        let t = r.to_text();
        assert!(t.contains("image hello:1.0.0, layer 1"), "{t}");
        assert!(t.contains("mode differs: a 0755, b 0754"), "{t}");
        let j: Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(j["difference"]["field"], "mode");
        assert_eq!(j["difference"]["object"], "layer");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
