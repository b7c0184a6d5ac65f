//! Scanner-ready outputs: beside the combined layout, one OCI layout and one
//! docker archive per image under `images/`, because scanners take one image
//! at a time (syft refuses a layout with several manifests and a `docker
//! save` tar with several images; trivy likewise):
//!
//! ```text
//! images/<name>/            OCI layout holding only this image
//!                           (blobs hard-linked to the combined layout's)
//! images/<name>.tar         the same as one tar: OCI layout + docker
//!                           manifest.json (`docker load`, `syft docker-archive:`)
//! ```
//!
//! `<name>` is the image name with `/` replaced by `_`.

use super::{ImageError, WrittenImage, io_err, write_bundle, write_index};
use std::path::{Path, PathBuf};

/// The per-image layout directory and archive of `img` under `layout`.
pub fn paths(layout: &Path, img: &WrittenImage) -> (PathBuf, PathBuf) {
    let stem = img.name.replace('/', "_");
    let dir = layout.join("images");
    (dir.join(&stem), dir.join(format!("{stem}.tar")))
}

/// Write `images/<name>/` and `images/<name>.tar` for every image.
pub fn write_all(
    layout: &Path,
    images: &[WrittenImage],
    source_date_epoch: i64,
) -> Result<(), ImageError> {
    for img in images {
        let (dir, tar) = paths(layout, img);
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let mut hexes: Vec<&str> = vec![img.config.hex(), img.manifest.hex()];
        hexes.extend(
            img.layers
                .iter()
                .map(|l| l.digest.trim_start_matches("sha256:")),
        );
        for hex in hexes {
            let from = layout.join("blobs/sha256").join(hex);
            let to = blobs.join(hex);
            if to.exists() {
                continue;
            }
            // A hard link costs no space; copy across file systems.
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(io_err(&to))?;
            }
        }
        write_index(&dir, std::slice::from_ref(img))?;
        write_bundle(&dir, std::slice::from_ref(img), &tar, source_date_epoch)?;
    }
    Ok(())
}
