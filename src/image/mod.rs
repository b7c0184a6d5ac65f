//! Stage 4: OCI image layout and the docker-loadable bundle.
//!
//! Given the layers of each image, writes the image config, the manifest,
//! `index.json` and `oci-layout` into a layout directory. Every JSON document
//! goes through [`crate::json::to_canonical`] (sorted keys), and is stored as
//! a blob named by its digest. [`write_bundle`] packs a layout into one tar
//! that is both an OCI layout and what `docker load` reads (`manifest.json`
//! with `RepoTags`), blobs stored once.

pub mod compat;
pub mod per_image;
pub mod vendor;

use crate::layer::LayerBlob;
use crate::recipe::Config;
use serde_json::{Value, json};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Errors of this stage.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "writing {path}: {source}\nhelp: check free space and permissions of the output directory"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: {reason}\nhelp: point from-layout at an OCI image layout holding the pinned image"
    )]
    BadLayout { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// Media types.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Write `bytes` as a blob; returns its descriptor.
pub fn write_blob(
    blobs_dir: &Path,
    media_type: &str,
    bytes: &[u8],
) -> Result<Descriptor, ImageError> {
    let hex = crate::digest::sha256_hex(bytes);
    let path = blobs_dir.join(&hex);
    if !path.exists() {
        let mut tmp = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(blobs_dir)
            .map_err(io_err(blobs_dir))?;
        tmp.write_all(bytes).map_err(io_err(&path))?;
        tmp.persist(&path).map_err(|e| ImageError::Io {
            path: path.clone(),
            source: e.error,
        })?;
    }
    Ok(Descriptor {
        media_type: media_type.into(),
        digest: format!("sha256:{hex}"),
        size: bytes.len() as u64,
    })
}

/// Format seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One entry of an image's history.
#[derive(Debug, Clone)]
pub struct History {
    pub created_by: String,
    pub comment: Option<String>,
}

/// Everything needed to write one image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: String,
    pub tag: String,
    /// Merged configuration (base, then recipe).
    pub config: Config,
    /// Layers, bottom first.
    pub layers: Vec<LayerBlob>,
    /// One per layer.
    pub history: Vec<History>,
    pub source_date_epoch: i64,
    pub arch: String,
    /// Manifest annotations (base image name/digest, ...).
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A written image.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    pub name: String,
    pub tag: String,
    pub config: Descriptor,
    pub manifest: Descriptor,
    pub layers: Vec<LayerBlob>,
    /// Debian architecture (`amd64`, `arm64`).
    pub arch: String,
}

/// The OCI platform of Debian architecture `arch`: `(architecture,
/// variant)` as the image spec and Go name them (`arm64` is `arm64`/`v8`,
/// `armhf` is `arm`/`v7`, `i386` is `386`, `ppc64el` is `ppc64le`).
pub fn oci_platform(arch: &str) -> (&str, Option<&'static str>) {
    match arch {
        "arm64" => ("arm64", Some("v8")),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "i386" => ("386", None),
        "ppc64el" => ("ppc64le", None),
        "mips64el" => ("mips64le", None),
        a => (a, None),
    }
}

/// The `platform` object of a descriptor (`{"architecture", "os"}`, and
/// `variant` where the architecture has one).
pub fn platform_json(arch: &str) -> Value {
    let (a, variant) = oci_platform(arch);
    let mut v = json!({"architecture": a, "os": "linux"});
    if let Some(x) = variant {
        v["variant"] = json!(x);
    }
    v
}

impl WrittenImage {
    /// `name:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// The image config JSON.
pub fn config_json(spec: &ImageSpec) -> Value {
    let c = &spec.config;
    let created = rfc3339(spec.source_date_epoch);
    let mut cfg = serde_json::Map::new();
    if !c.env.is_empty() {
        cfg.insert(
            "Env".into(),
            json!(
                c.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            ),
        );
    }
    if let Some(e) = &c.entrypoint {
        cfg.insert("Entrypoint".into(), json!(e));
    }
    if let Some(e) = &c.cmd {
        cfg.insert("Cmd".into(), json!(e));
    }
    if let Some(w) = &c.workdir {
        cfg.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &c.user {
        cfg.insert("User".into(), json!(u));
    }
    if let Some(s) = &c.stop_signal {
        cfg.insert("StopSignal".into(), json!(s));
    }
    if !c.expose.is_empty() {
        let ports: serde_json::Map<String, Value> =
            c.expose.iter().map(|p| (p.clone(), json!({}))).collect();
        cfg.insert("ExposedPorts".into(), Value::Object(ports));
    }
    if !c.labels.is_empty() {
        cfg.insert("Labels".into(), json!(c.labels));
    }
    let history: Vec<Value> = spec
        .history
        .iter()
        .map(|h| {
            let mut v = json!({"created": created, "created_by": h.created_by});
            if let Some(c) = &h.comment {
                v["comment"] = json!(c);
            }
            v
        })
        .collect();
    let mut v = json!({
        "created": created,
        "os": "linux",
        "config": Value::Object(cfg),
        "rootfs": {"type": "layers", "diff_ids": spec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "history": history,
    });
    // The platform fields as the config spec has them (amd64: unchanged).
    for (k, x) in platform_json(&spec.arch).as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v
}

/// Write an image's config and manifest blobs.
pub fn write_image(spec: &ImageSpec, blobs_dir: &Path) -> Result<WrittenImage, ImageError> {
    let config = write_blob(
        blobs_dir,
        MEDIA_CONFIG,
        &crate::json::to_canonical(&config_json(spec)),
    )?;
    let mut annotations = spec.annotations.clone();
    annotations.insert(
        "org.opencontainers.image.created".into(),
        rfc3339(spec.source_date_epoch),
    );
    annotations.insert("org.opencontainers.image.ref.name".into(), spec.tag.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.to_json(),
        "layers": spec.layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        "annotations": annotations,
    });
    let manifest = write_blob(
        blobs_dir,
        MEDIA_MANIFEST,
        &crate::json::to_canonical(&manifest),
    )?;
    Ok(WrittenImage {
        name: spec.name.clone(),
        tag: spec.tag.clone(),
        config,
        manifest,
        layers: spec.layers.clone(),
        arch: spec.arch.clone(),
    })
}

/// Write `oci-layout` and `index.json` (manifests sorted by reference).
pub fn write_index(layout: &Path, images: &[WrittenImage]) -> Result<Descriptor, ImageError> {
    std::fs::write(
        layout.join("oci-layout"),
        crate::json::to_canonical(&json!({"imageLayoutVersion": "1.0.0"})),
    )
    .map_err(io_err(layout))?;
    let mut imgs: Vec<&WrittenImage> = images.iter().collect();
    imgs.sort_by_key(|i| i.reference());
    let manifests: Vec<Value> = imgs
        .iter()
        .map(|i| {
            let mut d = i.manifest.to_json();
            d["annotations"] = json!({
                "org.opencontainers.image.ref.name": i.reference(),
                "io.containerd.image.name": format!("docker.io/library/{}", i.reference()),
            });
            d["platform"] = platform_json(&i.arch);
            d
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests});
    let bytes = crate::json::to_canonical(&index);
    std::fs::write(layout.join("index.json"), &bytes).map_err(io_err(layout))?;
    Ok(Descriptor {
        media_type: MEDIA_INDEX.into(),
        digest: format!("sha256:{}", crate::digest::sha256_hex(&bytes)),
        size: bytes.len() as u64,
    })
}

/// The docker `manifest.json` for a bundle.
pub fn docker_manifest(images: &[WrittenImage]) -> Vec<u8> {
    let mut imgs: Vec<&WrittenImage> = images.iter().collect();
    imgs.sort_by_key(|i| i.reference());
    let v: Vec<Value> = imgs
        .iter()
        .map(|i| {
            json!({
                "Config": format!("blobs/sha256/{}", i.config.hex()),
                "RepoTags": [i.reference()],
                "Layers": i.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.trim_start_matches("sha256:"))).collect::<Vec<_>>(),
            })
        })
        .collect();
    crate::json::to_canonical(&Value::Array(v))
}

/// Write a tar holding the layout's `oci-layout`, `index.json`, the blobs
/// the images use (each once) and a docker `manifest.json`. Deterministic:
/// sorted entries, mtime `source_date_epoch`, root-owned, 0644/0755.
/// Returns the tar's `sha256:` digest, hashed in the pass that writes it.
pub fn write_bundle(
    layout: &Path,
    images: &[WrittenImage],
    dest: &Path,
    source_date_epoch: i64,
) -> Result<String, ImageError> {
    let mtime = source_date_epoch.max(0) as u64;
    let mut digest = String::new();
    let fill = |w: &mut dyn Write| {
        let mut b = tar::Builder::new(crate::digest::HashWriter::new(w));
        let header = |size: u64, mode: u32, dir: bool| {
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            h.set_entry_type(if dir {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h
        };
        let mut blobs: Vec<String> = Vec::new();
        for i in images {
            blobs.push(i.config.hex().to_string());
            blobs.push(i.manifest.hex().to_string());
            for l in &i.layers {
                blobs.push(l.digest.trim_start_matches("sha256:").to_string());
            }
        }
        blobs.sort();
        blobs.dedup();
        for d in ["blobs/", "blobs/sha256/"] {
            b.append_data(&mut header(0, 0o755, true), d, io::empty())
                .map_err(io_err(dest))?;
        }
        for hex in &blobs {
            let p = layout.join("blobs/sha256").join(hex);
            let f = std::fs::File::open(&p).map_err(io_err(&p))?;
            let size = f.metadata().map_err(io_err(&p))?.len();
            b.append_data(
                &mut header(size, 0o644, false),
                format!("blobs/sha256/{hex}"),
                f,
            )
            .map_err(io_err(&p))?;
        }
        for name in ["index.json", "manifest.json", "oci-layout"] {
            let bytes = if name == "manifest.json" {
                docker_manifest(images)
            } else {
                std::fs::read(layout.join(name)).map_err(io_err(layout))?
            };
            b.append_data(
                &mut header(bytes.len() as u64, 0o644, false),
                name,
                &bytes[..],
            )
            .map_err(io_err(dest))?;
        }
        let (_, hex, _) = b.into_inner().map_err(io_err(dest))?.finish();
        digest = format!("sha256:{hex}");
        Ok(())
    };
    crate::fsutil::write_replacing(dest, fill, |p, e| io_err(p)(e))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn rfc3339_formats_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
