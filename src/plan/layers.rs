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
    /// The blob of the layer's path index (`layer::index`): package
    /// layers that ship have one, to check them against the image's other
    /// package layers.
    #[serde(default)]
    pub paths: Option<String>,
}

impl super::store::StepRecord for LayerRecord {
    const KIND: &'static str = "layer";
    fn blobs(&self) -> Vec<String> {
        std::iter::once(self.digest.clone())
            .chain(self.paths.clone())
            .collect()
    }
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

    pub(crate) fn from_blob(b: &LayerBlob, symlinks: Vec<String>) -> LayerRecord {
        LayerRecord {
            digest: b.digest.clone(),
            diff_id: b.diff_id.clone(),
            size: b.size,
            tar_size: b.tar_size,
            media_type: b.media_type.clone(),
            entries: b.entries,
            symlinks,
            paths: None,
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
    /// The dpkg database of an image that ships dpkg (every package of it).
    DpkgDatabase(Vec<&'a LockedPackage>),
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
                // amd64's key as before; other architectures name their
                // directories (arm64 has no `lib64` link).
                Part::MergedUsr => match layer::package::merged_usr_dirs(&self.tree.source.arch) {
                    d if d == layer::package::MERGED_USR_DIRS => json!("merged-usr"),
                    d => json!(format!("merged-usr:{}", d.join(","))),
                },
                Part::Packages(ps) => json!(
                    ps.iter()
                        .map(|p| [&p.name, &p.version, &p.sha256])
                        .collect::<Vec<_>>()
                ),
                Part::DpkgDatabase(ps) => json!({
                    "dpkg-database": ps
                        .iter()
                        .map(|p| [&p.name, &p.version, &p.sha256])
                        .collect::<Vec<_>>(),
                    "arch": self.tree.source.arch,
                }),
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
        // A shipped layer is hashed before it is reused (a scratch root
        // never reaches an output: its stamp is enough).
        let blob_ok = |d: &str| match step.scratch {
            true => self.store.has_blob(d),
            false => self.reusable(d, &format!("layer {}", step.label)),
        };
        let rec = match self.recall::<LayerRecord>(&key) {
            Some(r)
                if blob_ok(&r.digest)
                    && r.paths.as_ref().is_none_or(|p| self.store.has_blob(p)) =>
            {
                self.count.reused("layer");
                self.share(&key, &r);
                r
            }
            _ => {
                let rec = self.write_layer(step, files)?;
                self.keep(&key, &rec)?;
                self.count.built("layer");
                rec
            }
        };
        self.done.lock().expect("done").insert(key, rec.clone());
        Ok(rec)
    }

    fn write_layer(&self, step: &LayerStep, mut files: Vec<Vec<Entry>>) -> Result<LayerRecord> {
        let spool = self.store.stage_dir()?;
        // Entries are sorted on disk: memory does not grow with their number.
        let mut sorted = layer::EntrySpool::new(spool.path())?;
        for p in &step.parts {
            match p {
                Part::MergedUsr => {
                    for e in layer::package::merged_usr_entries(&self.tree.source.arch, self.sde) {
                        sorted.push(e)?;
                    }
                }
                Part::Packages(ps) => {
                    for p in ps {
                        let f = self.inputs.get(p)?;
                        layer::package::spool_package(
                            &mut sorted,
                            package_ref(p, &f),
                            spool.path(),
                            &self.package_options(),
                        )?;
                    }
                }
                Part::Files(_) => {
                    for e in files.remove(0) {
                        sorted.push(e)?;
                    }
                }
                Part::DpkgDatabase(ps) => {
                    for e in self.dpkg_database_entries(ps)? {
                        sorted.push(e)?;
                    }
                }
            }
        }
        // Shipped package layers keep a path index, to be checked against
        // the image's other package layers.
        let indexed = !step.scratch
            && step
                .parts
                .iter()
                .any(|p| matches!(p, Part::Packages(_) | Part::MergedUsr));
        let mut index = match indexed {
            true => Some(crate::digest::HashWriter::new(std::io::BufWriter::new(
                tempfile::NamedTempFile::new_in(self.store.tmp_dir())?,
            ))),
            false => None,
        };
        let (blob, symlinks) = layer::write_spooled(
            sorted,
            &step.lower,
            self.sde,
            &layer::WriteOptions {
                blobs_dir: self.store.blobs_dir(),
                compression: self.compression_for(step.scratch),
            },
            index.as_mut().map(|w| w as &mut dyn std::io::Write),
        )
        .with_context(|| format!("layer {}", step.label))?;
        self.store.seal_blob(&blob.digest)?;
        let mut rec = LayerRecord::from_blob(&blob, symlinks);
        if let Some(w) = index {
            let (file, digest, _) = w.finish();
            let file = file.into_inner().map_err(|e| e.into_error())?;
            let path = file.into_temp_path();
            self.store.adopt_blob(&path, &digest)?;
            // Adopted by rename: nothing is left to remove.
            let _ = path.keep();
            rec.paths = Some(format!("sha256:{digest}"));
        }
        Ok(rec)
    }

    /// Check an image's package layers (their path indexes, bottom first)
    /// against each other: two packages in different layers must not ship
    /// one path differently. Remembered by the indexes' digests.
    pub fn check_paths(&self, image: &str, records: &[&LayerRecord]) -> Result<()> {
        let digests: Vec<&String> = records.iter().filter_map(|r| r.paths.as_ref()).collect();
        if digests.len() < 2 {
            return Ok(());
        }
        let key = super::key::key("paths", &json!(digests));
        if self.store.get::<bool>("paths", &key) == Some(true) {
            return Ok(());
        }
        let files: Vec<std::path::PathBuf> = digests.iter().map(|d| self.store.blob(d)).collect();
        layer::index::check(&files).with_context(|| {
            format!("image {image}: two of its package layers ship one path differently")
        })?;
        self.store.put("paths", &key, &true)?;
        Ok(())
    }

    /// Whether stored blob `digest` can be shipped again: there, unchanged,
    /// and hashing to its name. A blob that does not is evicted with a
    /// warning naming it and `label` (the step that made it), and its step
    /// runs again.
    pub(super) fn reusable(&self, digest: &str, label: &str) -> bool {
        match self.store.check_blob(digest) {
            Ok(super::store::BlobCheck::Good) => true,
            Ok(super::store::BlobCheck::Missing) => false,
            Ok(super::store::BlobCheck::Evicted { why }) => {
                self.st.say(
                    "Warning",
                    format!(
                        "step store: blob {digest} ({label}) is corrupt: {why}; removed from the store, its step runs again"
                    ),
                );
                false
            }
            Err(e) => {
                self.st.say(
                    "Warning",
                    format!("blob {digest} ({label}): {e}; its step runs again"),
                );
                false
            }
        }
    }

    /// Link stored blob `digest` to `dest` (an output), hashing it first
    /// unless this build already did: a blob that does not match its name
    /// is evicted and fails the build rather than ship.
    pub(super) fn ship_blob(&self, digest: &str, dest: &std::path::Path) -> Result<()> {
        use super::store::BlobCheck;
        match self.store.check_blob(digest)? {
            BlobCheck::Good => {}
            BlobCheck::Missing => anyhow::bail!(
                "step store: blob {digest} is missing or changed since it was stored\nhelp: build again: the step that makes it runs again"
            ),
            BlobCheck::Evicted { why } => anyhow::bail!(
                "step store: blob {digest} is corrupt: {why}; it was removed from the store and not shipped\nhelp: build again: the next build makes it afresh"
            ),
        }
        super::store::link_or_copy(&self.store.blob(digest), dest)
            .with_context(|| format!("cannot link blob {digest} to {}", dest.display()))
    }

    pub(super) fn package_options(&self) -> layer::package::PackageOptions {
        layer::package::PackageOptions {
            source_date_epoch: self.sde,
            merged_usr: true,
            dpkg_metadata: true,
            limits: self.deb_limits(),
        }
    }

    /// A package's entries, its contents spooled under `spool`.
    pub fn package_entries(
        &self,
        p: &LockedPackage,
        spool: &std::path::Path,
    ) -> Result<Vec<Entry>> {
        let f = self.inputs.get(p)?;
        let popts = self.package_options();
        Ok(layer::package::package_entries_of(
            package_ref(p, &f),
            spool,
            &popts,
        )?)
    }
}

/// A fetched package, borrowed for the layer module.
fn package_ref<'a>(
    p: &'a LockedPackage,
    f: &'a super::inputs::Fetched,
) -> layer::package::PackageRef<'a> {
    layer::package::PackageRef {
        name: &p.name,
        deb: &f.deb,
        control: &f.control,
    }
}
