//! Build-stage steps: the stage's root (its packages, configured), the
//! sandboxed run (see [`crate::sandbox`], which keeps its own cache of
//! results), and the artifact layer copied into the image, keyed by the
//! stage's cache key and the copies.

use super::configure::Root;
use super::exec::{BaseBuilt, Ctx};
use super::layers::{LayerRecord, LayerStep, Part};
use crate::image::History;
use crate::layer::{self, LayerBlob};
use crate::recipe::Recipe;
use crate::sandbox;
use crate::sbom::SbomFile;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// What an artifact step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub layer: LayerRecord,
    /// `(path, sha256, size)` of every file copied.
    pub files: Vec<(String, String, u64)>,
}

impl super::store::StepRecord for ArtifactRecord {
    const KIND: &'static str = "artifacts";
    fn blobs(&self) -> Vec<String> {
        vec![self.layer.digest.clone()]
    }
}

impl<'a> Ctx<'a> {
    /// The layer step of `img`'s build-stage packages, if it has a build
    /// stage.
    pub fn stage_root_step<'r>(
        &self,
        img: &'r Recipe,
        symlinks: &Arc<BTreeSet<String>>,
    ) -> Option<LayerStep<'r>>
    where
        'a: 'r,
    {
        img.build.as_ref()?;
        Some(LayerStep {
            label: format!("{} build-stage root", img.name),
            parts: vec![Part::Packages(self.closure(&img.name, "build"))],
            lower: symlinks.clone(),
            scratch: true,
        })
    }

    /// `img`'s build stage and artifact layer, if it has a build stage.
    pub fn build_stage(
        &self,
        img: &Recipe,
        base: &BaseBuilt,
    ) -> Result<Option<(LayerRecord, Vec<SbomFile>, History)>> {
        let Some(b) = &img.build else {
            return Ok(None);
        };
        let step = self
            .stage_root_step(img, &base.symlinks)
            .expect("a recipe with a build stage");
        let root = self.layer(&step)?;
        let mut layers: Vec<LayerBlob> = base.layers.clone();
        layers.push(root.blob());
        let below = [(self.tree.base.name.as_str(), "runtime")];
        let cfg = self.configure(
            img,
            "build",
            &Root {
                layers: &layers,
                below: &below,
                scratch: true,
                lower: &base.symlinks,
                toolset: base.toolset.as_ref(),
            },
        )?;
        layers.extend(cfg.map(|c| c.blob()));
        let spec = sandbox::StageSpec {
            recipe: img.name.clone(),
            layers: layers.iter().map(|l| self.store.blob(&l.digest)).collect(),
            context: b.context.clone(),
            steps: b.steps.clone(),
            env: b.env.clone(),
            artifacts: b.artifacts.clone(),
            source_date_epoch: self.sde,
            limits: b.limits,
        };
        let stage = sandbox::cache_key(&spec)?;
        // The stage's own result (kept beside the steps, collected by gc
        // with them) stays while this tree uses it.
        self.store.mark(std::path::Path::new("stages").join(&stage));
        let key = super::key::key(
            "artifacts",
            &json!({
                "stage": stage,
                "copies": format!("{:?}", img.copies),
                "lower": base.symlinks.iter().collect::<Vec<_>>(),
                "sde": self.sde,
                "compression": format!("{:?}", self.opts.compression),
            }),
        );
        let rec = match self.recall::<ArtifactRecord>(&key).filter(|r| {
            self.reusable(
                &r.layer.digest,
                &format!("{} build-stage artifacts", img.name),
            )
        }) {
            Some(r) => {
                self.count.reused("build stage");
                self.share(&key, &r);
                self.st
                    .say("Reused", format!("{} build stage and artifacts", img.name));
                r
            }
            None => {
                let r = self.run_stage(img, &spec, base)?;
                self.keep(&key, &r)?;
                self.count.built("build stage");
                r
            }
        };
        let files = rec
            .files
            .iter()
            .map(|(path, sha256, size)| SbomFile {
                path: path.clone(),
                sha256: sha256.clone(),
                size: *size,
            })
            .collect();
        let tos: Vec<&str> = img.copies.iter().map(|c| c.to.as_str()).collect();
        let h = History {
            created_by: format!("imgforge: build-stage artifacts {}", tos.join(", ")),
            comment: None,
        };
        Ok(Some((rec.layer, files, h)))
    }

    fn run_stage(
        &self,
        img: &Recipe,
        spec: &sandbox::StageSpec,
        base: &BaseBuilt,
    ) -> Result<ArtifactRecord> {
        let t = Instant::now();
        let steps = img.build.as_ref().map_or(0, |b| b.steps.len());
        self.st.say(
            "Building",
            format!("{} (build stage, {steps} steps)", img.name),
        );
        let cache = self.opts.common.cache_dir();
        let sopts = sandbox::SandboxOptions {
            cache_dir: self
                .opts
                .use_cache
                .then(|| self.store.root().join("stages")),
            work_dir: self.work.clone(),
            runtime: None,
            logs: Some(cache.join("logs")),
            trees: self.roots_trees(),
            executor: self.opts.executor.clone(),
        };
        let out = sandbox::run_stage(spec, &sopts)?;
        if out.cached {
            self.st.say(
                "Reused",
                format!(
                    "{} build stage from the cache ({})",
                    img.name,
                    &out.cache_key[..12]
                ),
            );
        } else {
            self.st.say(
                "Built",
                format!(
                    "{} build stage in {:.1}s",
                    img.name,
                    t.elapsed().as_secs_f64()
                ),
            );
        }
        let ents = sandbox::artifact_entries(&out, &img.copies, self.sde)?;
        let files = ents
            .iter()
            .filter(|e| e.kind == layer::Kind::File)
            .map(|e| {
                (
                    e.path.clone(),
                    e.sha256.map(hex::encode).unwrap_or_default(),
                    e.size,
                )
            })
            .collect();
        let norm = layer::normalize(ents, &base.symlinks, self.sde)
            .with_context(|| format!("artifact layer of {}", img.name))?;
        let blob = layer::write_layer(
            &norm,
            &layer::WriteOptions {
                blobs_dir: self.store.blobs_dir(),
                compression: self.opts.compression,
            },
        )?;
        self.store.seal_blob(&blob.digest)?;
        let symlinks = norm
            .iter()
            .filter(|e| matches!(e.kind, layer::Kind::Symlink(_)))
            .map(|e| e.path.clone())
            .collect();
        Ok(ArtifactRecord {
            layer: LayerRecord::from_blob(&blob, symlinks),
            files,
        })
    }
}
