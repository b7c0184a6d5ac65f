//! Layer steps: packages (a source-package group, a whole closure, a
//! build-stage or toolset root), recipe files, and the merged-/usr root,
//! each written once into the step store and found again by key.

use super::exec::Ctx;
use crate::layer::{self, Compression, Entry, LayerBlob};
use crate::recipe::Recipe;
use crate::resolve::LockedPackage;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a layer step produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub tar_size: u64,
    pub media_type: String,
    pub entries: usize,
    /// Symlinks in the layer: what layers above must not write through.
    pub symlinks: Vec<String>,
}

impl LayerRecord {
    pub fn blob(&self) -> LayerBlob {
        LayerBlob {
            digest: self.digest.clone(),
            diff_id: self.diff_id.clone(),
            size: self.size,
            tar_size: self.tar_size,
            media_type: self.media_type.clone(),
            entries: self.entries,
        }
    }

    fn from_blob(b: &LayerBlob, symlinks: Vec<String>) -> LayerRecord {
        LayerRecord {
            digest: b.digest.clone(),
            diff_id: b.diff_id.clone(),
            size: b.size,
            tar_size: b.tar_size,
            media_type: b.media_type.clone(),
            entries: b.entries,
            symlinks,
        }
    }
}

/// One source of entries of a layer.
pub enum Part<'a> {
    /// The merged-/usr root (`bin -> usr/bin`, ...).
    MergedUsr,
    /// Packages, with their dpkg metadata.
    Packages(Vec<&'a LockedPackage>),
    /// A recipe's `[[files]]`.
    Files(&'a Recipe),
}

/// A layer to make.
pub struct LayerStep<'a> {
    /// For messages only (never part of the key).
    pub label: String,
    pub parts: Vec<Part<'a>>,
    /// Symlinks of the layers below.
    pub lower: Arc<BTreeSet<String>>,
    /// A build-stage or toolset root: never ships, cheap zstd.
    pub scratch: bool,
}

impl Ctx<'_> {
    /// Layer compression: the build's, or cheap zstd for roots that never ship.
    pub fn compression_for(&self, scratch: bool) -> Compression {
        if scratch {
            Compression::Zstd(1)
        } else {
            self.opts.compression
        }
    }

    /// The layer of `step`, from the store or written now.
    pub fn layer(&self, step: &LayerStep) -> Result<LayerRecord> {
        let mut files: Vec<Vec<Entry>> = Vec::new();
        let mut parts = Vec::new();
        for p in &step.parts {
            parts.push(match p {
                Part::MergedUsr => json!("merged-usr"),
                Part::Packages(ps) => json!(
                    ps.iter()
                        .map(|p| [&p.name, &p.version, &p.sha256])
                        .collect::<Vec<_>>()
                ),
                Part::Files(r) => {
                    let f = super::files::file_entries(r, self.sde)?;
                    let v = json!(
                        f.iter()
                            .map(|e| json!([
                                e.path,
                                e.mode,
                                e.uid,
                                e.gid,
                                e.sha256.map(hex::encode)
                            ]))
                            .collect::<Vec<_>>()
                    );
                    files.push(f);
                    v
                }
            });
        }
        let key = super::key::key(
            "layer",
            &json!({
                "parts": parts,
                "lower": step.lower.iter().collect::<Vec<_>>(),
                "sde": self.sde,
                "compression": format!("{:?}", self.compression_for(step.scratch)),
                "max_entries": self.opts.max_package_entries,
            }),
        );
        // Asked for before in this build (steps started early): counted then.
        if let Some(r) = self.done.lock().expect("done").get(&key) {
            return Ok(r.clone());
        }
        let rec = match self.store.get::<LayerRecord>("layer", &key) {
            Some(r) if self.store.has_blob(&r.digest) => {
                self.count.reused("layer");
                r
            }
            _ => {
                let rec = self.write_layer(step, files)?;
                self.store.put("layer", &key, &rec)?;
                self.count.built("layer");
                rec
            }
        };
        self.done.lock().expect("done").insert(key, rec.clone());
        Ok(rec)
    }

    fn write_layer(&self, step: &LayerStep, mut files: Vec<Vec<Entry>>) -> Result<LayerRecord> {
        let mut entries: Vec<Entry> = Vec::new();
        let spool = self.store.stage_dir()?;
        for p in &step.parts {
            match p {
                Part::MergedUsr => entries.extend(layer::package::merged_usr_entries(self.sde)),
                Part::Packages(ps) => {
                    for p in ps {
                        entries.extend(self.package_entries(p, spool.path())?);
                    }
                }
                Part::Files(_) => entries.extend(files.remove(0)),
            }
        }
        let norm = layer::normalize(entries, &step.lower, self.sde)
            .with_context(|| format!("layer {}", step.label))?;
        let symlinks: Vec<String> = norm
            .iter()
            .filter(|e| matches!(e.kind, layer::Kind::Symlink(_)))
            .map(|e| e.path.clone())
            .collect();
        let blob = layer::write_layer(
            &norm,
            &layer::WriteOptions {
                blobs_dir: self.store.blobs_dir(),
                compression: self.compression_for(step.scratch),
            },
        )?;
        drop(norm);
        self.store.seal_blob(&blob.digest)?;
        Ok(LayerRecord::from_blob(&blob, symlinks))
    }

    /// A package's entries, its contents spooled under `spool`.
    pub fn package_entries(
        &self,
        p: &LockedPackage,
        spool: &std::path::Path,
    ) -> Result<Vec<Entry>> {
        let f = self.inputs.get(p)?;
        let input = layer::package::PackageInput {
            name: p.name.clone(),
            deb: f.deb.clone(),
            control: f.control.clone(),
        };
        let popts = layer::package::PackageOptions {
            source_date_epoch: self.sde,
            merged_usr: true,
            dpkg_metadata: true,
            limits: self.deb_limits(),
        };
        Ok(layer::package::package_entries(&input, spool, &popts)?)
    }
}
