//! Machine-readable build results (`build --format json`,
//! `--metadata-file FILE`), in the spirit of buildx's `--metadata-file`:
//! per image its reference, manifest and config digests, layer count and
//! sizes, the paths of its SBOMs (relative to the output directory), and
//! its runtime lint (what its config runs, what its files need and the
//! image lacks; see [`crate::lint`]).
//!
//! The document depends only on what was built (no times, no absolute
//! paths), so it is as reproducible as the images.

use crate::image::WrittenImage;
use crate::lint::Report;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The metadata of a build: `{"images": {"name:tag": {...}}, ...}`, with
/// `lint` (by `name:tag`) where the images were linted.
pub fn document(images: &[WrittenImage], lint: &BTreeMap<String, Report>) -> Value {
    let mut by_ref = serde_json::Map::new();
    let mut total = 0u64;
    for i in images {
        let layers: u64 = i.layers.iter().map(|l| l.size).sum();
        let size = i.manifest.size + i.config.size + layers;
        total += layers;
        let stem = crate::sbom::safe_name(&i.name);
        let mut doc = json!({
            "name": i.name,
            "tag": i.tag,
            "manifest": {"digest": i.manifest.digest, "size": i.manifest.size, "mediaType": i.manifest.media_type},
            "config": {"digest": i.config.digest, "size": i.config.size},
            "layers": i.layers.iter().map(|l| json!({
                "digest": l.digest,
                "diff_id": l.diff_id,
                "size": l.size,
                "uncompressed_size": l.tar_size,
                "mediaType": l.media_type,
            })).collect::<Vec<_>>(),
            "layer_count": i.layers.len(),
            "size": size,
            "uncompressed_size": i.layers.iter().map(|l| l.tar_size).sum::<u64>(),
            "sbom": {
                "spdx": format!("sbom/{stem}.spdx.json"),
                "cyclonedx": format!("sbom/{stem}.cdx.json"),
            },
        });
        if let Some(r) = lint.get(&i.reference()) {
            doc["lint"] = json!(r);
        }
        by_ref.insert(i.reference(), doc);
    }
    // Layers shared between images (the base) count once.
    let mut unique: Vec<(&str, u64)> = images
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| (l.digest.as_str(), l.size)))
        .collect();
    unique.sort();
    unique.dedup();
    json!({
        "images": Value::Object(by_ref),
        "layer_bytes_total": total,
        "layer_bytes_unique": unique.iter().map(|(_, s)| s).sum::<u64>(),
    })
}

/// Human-readable size (`12.3 MB`, decimal units as registries show).
pub fn human(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let units = ["kB", "MB", "GB", "TB"];
    let mut v = bytes as f64 / 1000.0;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(999), "999 B");
        assert_eq!(super::human(19_616_640), "19.6 MB");
        assert_eq!(super::human(1_500), "1.5 kB");
    }
}
