//! The outputs of a build, assembled in a staging directory from the store:
//! SBOMs and legal reports (one step for the whole build), per-image
//! layouts and archives, the combined bundle, and the record `verify` reads.

use super::exec::{Ctx, ImageBuilt};
use super::store::{link_or_copy, link_tree};
use crate::image::{self, WrittenImage};
use crate::recipe::Recipe;
use crate::resolve::LockedPackage;
use crate::sbom;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the SBOM step produced (its files are a stored tree).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SbomRecord {
    pub needs_review: usize,
}

impl super::store::StepRecord for SbomRecord {
    const KIND: &'static str = "sbom";
    const TREE: bool = true;
    fn blobs(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A stored archive (per-image tar or bundle).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveRecord {
    pub digest: String,
}

fn ids(ps: &[&LockedPackage]) -> Value {
    json!(
        ps.iter()
            .map(|p| [&p.name, &p.version, &p.sha256])
            .collect::<Vec<_>>()
    )
}

impl Ctx<'_> {
    /// The recipe of output image `i` (0 is the base).
    fn recipe_of(&self, i: usize) -> &Recipe {
        if i == 0 {
            &self.tree.base
        } else {
            &self.tree.images[i - 1]
        }
    }

    /// Shipped and build-stage packages of image `i`, sorted by name.
    fn sbom_packages(&self, i: usize) -> (Vec<&LockedPackage>, Vec<&LockedPackage>) {
        let mut ship = self.closure(&self.tree.base.name, "runtime");
        let mut build = Vec::new();
        if i > 0 {
            let r = self.recipe_of(i);
            ship.extend(self.closure(&r.name, "runtime"));
            build.extend(self.closure(&r.name, "build"));
        }
        ship.sort_by(|a, b| a.name.cmp(&b.name));
        build.sort_by(|a, b| a.name.cmp(&b.name));
        (ship, build)
    }

    fn sbom_package(&self, p: &LockedPackage) -> Result<sbom::SbomPackage> {
        let f = self.inputs.get(p)?;
        Ok(sbom::SbomPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            source: p.source.clone(),
            source_version: p.source_version.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            filename: p.filename.clone(),
            deb_path: f.deb.clone(),
            control: f.control.clone(),
        })
    }

    fn sbom_options(
        &self,
        out_dir: &Path,
        images: Vec<sbom::SbomImage>,
    ) -> Result<sbom::SbomOptions> {
        let mut available: BTreeMap<String, PathBuf> = BTreeMap::new();
        for p in self.lock.images.iter().flat_map(|l| l.packages.iter()) {
            available.insert(p.name.clone(), self.inputs.get(p)?.deb.clone());
        }
        Ok(sbom::SbomOptions {
            out_dir: out_dir.to_path_buf(),
            source_date_epoch: self.sde as i64,
            distro: self.tree.source.distro.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            images,
            available,
            jobs: rayon::current_num_threads(),
            limits: self.deb_limits(),
            // Salted like every step key: a rebuilt imgforge starts afresh.
            finding_cache: Some(self.findings_dir()),
        })
    }

    /// The finding memo: salted like every step key, so a rebuilt
    /// imgforge starts afresh.
    fn findings_dir(&self) -> std::path::PathBuf {
        let rel =
            std::path::Path::new("findings").join(&super::key::key("findings", &json!(null))[..16]);
        self.store.mark(&rel);
        self.store.root().join(rel)
    }

    /// Detect every package's license now, into the finding memo, so the
    /// SBOM step finds them there: a cold build runs this beside the
    /// base's maintainer scripts, which leave a core idle. Failures are
    /// left for the SBOM step, which detects again and reports them.
    pub fn early_findings(&self) {
        let images = self
            .lock
            .images
            .iter()
            .map(|l| -> Result<sbom::SbomImage> {
                Ok(sbom::SbomImage {
                    name: l.name.clone(),
                    tag: String::new(),
                    manifest_digest: String::new(),
                    config_digest: String::new(),
                    packages: l
                        .packages
                        .iter()
                        .map(|p| self.sbom_package(p))
                        .collect::<Result<_>>()?,
                    build_packages: Vec::new(),
                    artifacts: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>();
        if let Ok(images) = images
            && let Ok(opts) = self.sbom_options(&self.work, images)
        {
            let _ = sbom::findings(&opts);
        }
    }

    /// SPDX, CycloneDX and legal reports into `layout`; returns how many
    /// packages need legal review.
    pub fn sboms(
        &self,
        layout: &Path,
        images: &[WrittenImage],
        built: &[ImageBuilt],
    ) -> Result<usize> {
        let artifacts = |i: usize| -> Vec<sbom::SbomFile> {
            if i == 0 {
                Vec::new()
            } else {
                built[i - 1].artifacts.clone()
            }
        };
        let all: Vec<&LockedPackage> = self
            .lock
            .images
            .iter()
            .flat_map(|l| l.packages.iter())
            .collect();
        let doc: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (ship, build) = self.sbom_packages(i);
                let files: Vec<_> = artifacts(i).iter().map(|f| json!([f.path, f.sha256, f.size])).collect();
                json!({"name": w.name, "tag": w.tag, "manifest": w.manifest.digest, "config": w.config.digest,
                       "packages": ids(&ship), "build": ids(&build), "artifacts": files})
            })
            .collect();
        let key = super::key::key(
            "sbom",
            &json!({"images": doc, "all": ids(&all), "distro": self.tree.source.distro, "sde": self.sde}),
        );
        let local = self
            .store
            .tree(&key)
            .and_then(|_| self.store.get::<SbomRecord>("sbom", &key));
        let found = local.or_else(|| self.remote.fetch::<SbomRecord>(&self.store, &key));
        if let (Some(r), Some(tree)) = (found, self.store.tree(&key)) {
            self.count.reused("sbom");
            self.share(&key, &r);
            link_tree(&tree, layout)
                .with_context(|| format!("cannot link SBOMs into {}", layout.display()))?;
            return Ok(r.needs_review);
        }
        self.st
            .say("SBOM", "SPDX 2.3, CycloneDX 1.6 and license reports");
        let staged = self.store.stage_dir()?;
        let pkg = |p: &LockedPackage| self.sbom_package(p);
        let mut sbom_images = Vec::new();
        for (i, w) in images.iter().enumerate() {
            let (ship, build) = self.sbom_packages(i);
            sbom_images.push(sbom::SbomImage {
                name: w.name.clone(),
                tag: w.tag.clone(),
                manifest_digest: w.manifest.digest.clone(),
                config_digest: w.config.digest.clone(),
                packages: ship.into_iter().map(pkg).collect::<Result<_>>()?,
                build_packages: build.into_iter().map(pkg).collect::<Result<_>>()?,
                artifacts: artifacts(i),
            });
        }
        let summary = sbom::write_all(&self.sbom_options(staged.path(), sbom_images)?)?;
        let tree = self.store.adopt_tree(staged, &key)?;
        self.keep(
            &key,
            &SbomRecord {
                needs_review: summary.needs_review,
            },
        )?;
        self.count.built("sbom");
        link_tree(&tree, layout)
            .with_context(|| format!("cannot link SBOMs into {}", layout.display()))?;
        Ok(summary.needs_review)
    }

    /// A tar of `images` from the layout `dir` (whose `index.json` it
    /// holds) at `dest`, from the store when the same archive was made
    /// before; returns its `sha256:` digest.
    pub fn archive(&self, dir: &Path, images: &[WrittenImage], dest: &Path) -> Result<String> {
        let index = std::fs::read(dir.join("index.json"))
            .with_context(|| format!("cannot read {}", dir.join("index.json").display()))?;
        let key = super::key::key(
            "archive",
            &json!({
                "index": crate::digest::sha256_hex(&index),
                "manifests": images.iter().map(|i| &i.manifest.digest).collect::<Vec<_>>(),
                "sde": self.sde,
            }),
        );
        let label = format!(
            "archive {}",
            dest.file_name().unwrap_or_default().to_string_lossy()
        );
        if let Some(r) = self.store.get::<ArchiveRecord>("archive", &key)
            && self.reusable(&r.digest, &label)
        {
            self.count.reused("archive");
            self.ship_blob(&r.digest, dest)?;
            return Ok(r.digest);
        }
        let staged = self.store.stage_dir()?;
        let tmp = staged.path().join("archive.tar");
        // Hashed as written, never read back.
        let digest = image::write_bundle(dir, images, &tmp, self.sde as i64)?;
        let stored = self.store.adopt_blob(&tmp, &digest)?;
        self.store.put(
            "archive",
            &key,
            &ArchiveRecord {
                digest: digest.clone(),
            },
        )?;
        self.count.built("archive");
        link_or_copy(&stored, dest)?;
        Ok(digest)
    }

    /// `images/<name>/` (an OCI layout of one image) and `images/<name>.tar`
    /// for every image; returns the archives' digests by relative path.
    pub fn per_image(
        &self,
        layout: &Path,
        images: &[WrittenImage],
    ) -> Result<BTreeMap<String, String>> {
        let mut known = BTreeMap::new();
        for img in images {
            let (dir, tar) = image::per_image::paths(layout, img);
            let blobs = dir.join("blobs").join("sha256");
            std::fs::create_dir_all(&blobs)
                .with_context(|| format!("cannot create {}", blobs.display()))?;
            let mut hexes: Vec<&str> = vec![img.config.hex(), img.manifest.hex()];
            hexes.extend(
                img.layers
                    .iter()
                    .map(|l| l.digest.trim_start_matches("sha256:")),
            );
            for hex in hexes {
                link_or_copy(&layout.join("blobs/sha256").join(hex), &blobs.join(hex))?;
            }
            image::write_index(&dir, std::slice::from_ref(img))?;
            let digest = self.archive(&dir, std::slice::from_ref(img), &tar)?;
            let rel = tar
                .strip_prefix(layout)
                .expect("per-image outputs are in the layout");
            known.insert(rel.to_string_lossy().into_owned(), digest);
        }
        Ok(known)
    }
}
