//! Running the plan: the base's layers, then every image's chain in
//! parallel (its package layers, its configuration, its build stage and
//! artifacts), each step taken from the store when its key is there.
//!
//! Independent work overlaps: images run side by side on the rayon pool,
//! and inside an image the build stage (its root, configuration and run)
//! runs while the runtime layers are written and configured.

use super::group::{self, Member};
use super::inputs::Inputs;
use super::layers::{LayerRecord, LayerStep, Part};
use super::store::StepStore;
use crate::image::{self, History};
use crate::layer::LayerBlob;
use crate::options::{BuildOptions, LayerPolicy};
use crate::recipe::{Config, Recipe, Tree};
use crate::resolve::{Lock, LockedPackage};
use crate::sbom::SbomFile;
use crate::ui::{Progress, Status};
use anyhow::Result;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Steps reused and run, by kind; shown on the progress display.
#[derive(Debug, Default)]
pub struct Counter(
    Mutex<BTreeMap<&'static str, (usize, usize)>>,
    Option<Progress>,
);

impl Counter {
    /// Counts shown on `progress` as they change.
    pub fn with_progress(progress: Progress) -> Counter {
        Counter(Mutex::default(), Some(progress))
    }
    pub fn reused(&self, kind: &'static str) {
        self.bump(kind, true);
    }
    pub fn built(&self, kind: &'static str) {
        self.bump(kind, false);
    }
    fn bump(&self, kind: &'static str, reused: bool) {
        let mut m = self.0.lock().expect("counter");
        let e = m.entry(kind).or_default();
        if reused {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
        if let Some(p) = &self.1 {
            let (r, b) = m.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
            p.set(format!(
                "building: {} step(s) done ({r} reused, {b} run); last: {kind}",
                r + b
            ));
        }
    }
    /// `(reused, run)` over every kind.
    pub fn totals(&self) -> (usize, usize) {
        let m = self.0.lock().expect("counter");
        m.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1))
    }
    /// `(kind, reused, run)`, sorted by kind.
    pub fn by_kind(&self) -> Vec<(&'static str, usize, usize)> {
        let m = self.0.lock().expect("counter");
        m.iter().map(|(k, v)| (*k, v.0, v.1)).collect()
    }
}

/// What every step of one build shares.
pub struct Ctx<'a> {
    pub opts: &'a BuildOptions,
    pub tree: &'a Tree,
    pub lock: &'a Lock,
    pub inputs: Inputs<'a>,
    pub store: StepStore,
    pub sde: u64,
    pub st: Status,
    pub count: Counter,
    /// Layer steps this build already ran or reused, by key.
    pub done: Mutex<BTreeMap<String, LayerRecord>>,
    /// Scratch space for configure and build-stage roots.
    pub work: PathBuf,
    /// Packages decompressed once for every reader of the build (in `work`).
    pub plain: Arc<crate::deb::plain::PlainCache>,
    /// Layers unpacked once for every root of the build (in `work`).
    pub trees: Arc<crate::sandbox::overlay::Trees>,
    /// The remote step caches (`--cache-from`, `--cache-to`, `[cache]`).
    pub remote: super::remote::Remotes,
}

/// The base's layers: what every image starts from.
pub struct BaseBuilt {
    pub layers: Vec<LayerBlob>,
    pub history: Vec<History>,
    /// Symlinks of the base's layers (images must not write through them).
    pub symlinks: Arc<BTreeSet<String>>,
    pub config: Config,
    pub toolset: Option<super::configure::Toolset>,
    /// The base's layers as the image layer budget counts them (see
    /// [`Ctx::base_budget_layers`]).
    pub budget_layers: usize,
    /// The base's package layers, for the images' path checks.
    pub packages: Vec<LayerRecord>,
}

/// An image's own layers on top of the base.
pub struct ImageBuilt {
    pub layers: Vec<LayerBlob>,
    pub history: Vec<History>,
    pub artifacts: Vec<SbomFile>,
    /// The image's own package layers (their path indexes, for the lint).
    pub packages: Vec<LayerRecord>,
}

fn hist(created_by: String, comment: Option<&str>) -> History {
    History {
        created_by,
        comment: comment.map(str::to_string),
    }
}

/// `a, b, c`.
pub fn names<'p>(ps: impl IntoIterator<Item = &'p LockedPackage>) -> String {
    ps.into_iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> Ctx<'a> {
    /// The limits every package read by this build gets, with the
    /// build's cache of decompressed packages.
    pub fn deb_limits(&self) -> crate::deb::Limits {
        crate::deb::Limits {
            plain: Some(self.plain.clone()),
            entries: self.opts.max_package_entries,
            ..Default::default()
        }
    }

    /// The shared layer trees configure and build-stage roots are mounted
    /// from, unless `--unpack-roots` asked for plain directories.
    pub fn roots_trees(&self) -> Option<Arc<crate::sandbox::overlay::Trees>> {
        (!self.opts.unpack_roots).then(|| self.trees.clone())
    }

    /// The locked packages of `name`'s `stage` closure.
    pub fn closure(&self, name: &str, stage: &str) -> Vec<&'a LockedPackage> {
        self.lock
            .get(name, stage)
            .map(|l| l.packages.iter().collect())
            .unwrap_or_default()
    }

    /// Package layers of a closure under the layer policy, with history.
    fn package_steps<'s>(
        &self,
        pkgs: Vec<&'s LockedPackage>,
        cap: usize,
        lower: &Arc<BTreeSet<String>>,
        label: &str,
    ) -> Vec<(LayerStep<'s>, History)> {
        let members: Vec<Member> = pkgs
            .iter()
            .map(|p| Member {
                name: p.name.clone(),
                source: if p.source.is_empty() {
                    p.name.clone()
                } else {
                    p.source.clone()
                },
                size: p.size,
            })
            .collect();
        let by_name: BTreeMap<&str, &'s LockedPackage> =
            pkgs.iter().map(|p| (p.name.as_str(), *p)).collect();
        group::group(&members, cap)
            .into_iter()
            .map(|g| {
                let ps: Vec<&LockedPackage> =
                    g.members.iter().map(|n| by_name[n.as_str()]).collect();
                let h = hist(
                    format!(
                        "imgforge: packages {} (source {})",
                        names(ps.iter().copied()),
                        g.label
                    ),
                    None,
                );
                let step = LayerStep {
                    label: format!("{label} packages of {}", g.label),
                    parts: vec![Part::Packages(ps)],
                    lower: lower.clone(),
                    scratch: false,
                };
                (step, h)
            })
            .collect()
    }

    /// Run steps in parallel; records in step order.
    pub fn layers(&self, steps: &[(LayerStep, History)]) -> Result<Vec<LayerRecord>> {
        steps.par_iter().map(|(s, _)| self.layer(s)).collect()
    }

    /// The base: its package layers, files, configuration (and the toolset
    /// root that configuration needs). A build that had to write base
    /// layers detects licenses too: that starts in `scope` once every
    /// package has been read (so it reads the decompressed copies), and is
    /// needed only by the SBOM step, so nothing here or in the images'
    /// steps waits for it.
    pub fn base<'s>(
        &'s self,
        vendor: Option<&image::vendor::Imported>,
        scope: &rayon::Scope<'s>,
    ) -> Result<BaseBuilt> {
        let base = &self.tree.base;
        let merged: Arc<BTreeSet<String>> = Arc::new(
            crate::layer::package::merged_usr_entries(&self.tree.source.arch, self.sde)
                .into_iter()
                .filter(|e| matches!(e.kind, crate::layer::Kind::Symlink(_)))
                .map(|e| e.path)
                .collect(),
        );
        let steps = self.base_steps(vendor.is_some(), &merged);
        let (records, toolset) =
            rayon::join(|| self.layers(&steps), || self.toolset_layer(&merged));
        let (records, toolset) = (records?, toolset?);
        self.check_paths(&base.name, &records.iter().collect::<Vec<_>>())?;
        let mut symlinks: BTreeSet<String> = (*merged).clone();
        symlinks.extend(records.iter().flat_map(|r| r.symlinks.iter().cloned()));
        let symlinks = Arc::new(symlinks);
        let mut layers: Vec<LayerBlob> = vendor.map(|v| v.layers.clone()).unwrap_or_default();
        let mut history: Vec<History> = vendor
            .map(|v| {
                v.history
                    .iter()
                    .map(|h| hist(h.clone(), Some("vendor base image")))
                    .collect()
            })
            .unwrap_or_default();
        layers.extend(records.iter().map(LayerRecord::blob));
        history.extend(steps.into_iter().map(|s| s.1));
        let toolset = self.configured_toolset(toolset, &layers, &symlinks)?;
        let budget_layers = self.base_budget_layers(layers.len(), toolset.is_some());
        // The images' package layers need only the base's symlinks: write
        // them while the base's maintainer scripts run.
        let cold = self.count.totals().1 > 0;
        let (top, ()) = rayon::join(
            || self.base_top(&layers, &symlinks, toolset.as_ref()),
            || {
                if self.early_layers(&symlinks, budget_layers) && cold {
                    scope.spawn(|_| self.early_findings());
                }
            },
        );
        for (blob, h) in top? {
            layers.push(blob);
            history.push(h);
        }
        let mut config = base.config.clone();
        for kv in vendor.map(|v| v.env.as_slice()).unwrap_or_default() {
            if let Some((k, val)) = kv.split_once('=') {
                config
                    .env
                    .entry(k.to_string())
                    .or_insert_with(|| val.to_string());
            }
        }
        Ok(BaseBuilt {
            layers,
            history,
            symlinks,
            config,
            toolset,
            budget_layers,
            packages: records,
        })
    }

    /// The toolset configured as on an installed Debian system: its
    /// packages' scripts run once, on the base's packages, so the images'
    /// scripts find what those made (PAM's common files, for one). Never
    /// shipped.
    fn configured_toolset(
        &self,
        packages: Option<LayerRecord>,
        base_layers: &[LayerBlob],
        symlinks: &BTreeSet<String>,
    ) -> Result<Option<super::configure::Toolset>> {
        let Some(packages) = packages else {
            return Ok(None);
        };
        let mut ts = super::configure::Toolset {
            packages,
            config: None,
        };
        let mut layers = base_layers.to_vec();
        layers.push(ts.packages.blob());
        // The toolset's scripts run whatever the base recipe's opt-out.
        let mut recipe = self.tree.base.clone();
        recipe.configure.enabled = true;
        let root = super::configure::Root {
            layers: &layers,
            below: &[(self.tree.base.name.as_str(), "runtime")],
            scratch: true,
            lower: symlinks,
            toolset: Some(&ts),
        };
        ts.config = self.configure(&recipe, "toolset", &root)?;
        Ok(Some(ts))
    }

    /// The root the configure steps' scripts run with (never shipped).
    fn toolset_layer(&self, merged: &Arc<BTreeSet<String>>) -> Result<Option<LayerRecord>> {
        let pkgs = self.closure(&self.tree.base.name, "toolset");
        if pkgs.is_empty() {
            return Ok(None);
        }
        let step = LayerStep {
            label: "configure toolset".into(),
            parts: vec![Part::Packages(pkgs)],
            lower: merged.clone(),
            scratch: true,
        };
        Ok(Some(self.layer(&step)?))
    }

    /// The base's configuration and files layers, above its packages.
    fn base_top(
        &self,
        layers: &[LayerBlob],
        symlinks: &BTreeSet<String>,
        toolset: Option<&super::configure::Toolset>,
    ) -> Result<Vec<(LayerBlob, History)>> {
        let base = &self.tree.base;
        let mut top = Vec::new();
        let root = super::configure::Root {
            layers,
            below: &[],
            scratch: false,
            lower: symlinks,
            toolset,
        };
        if let Some(c) = self.configure(base, "runtime", &root)? {
            top.push((c.blob(), self.configure_history(&base.name, "runtime")));
        }
        if let Some((rec, h)) = self.files_after_configure(base, symlinks)? {
            top.push((rec.blob(), h));
        }
        Ok(top)
    }

    /// How many layers the base takes from an image's budget: `below` (its
    /// package layers), a configuration layer whenever one may be made, and
    /// its files layer. Known before the base's scripts run, so the images'
    /// package layers can be grouped, and written, meanwhile.
    fn base_budget_layers(&self, below: usize, toolset: bool) -> usize {
        let base = &self.tree.base;
        let configure =
            toolset && base.configure.enabled && !self.closure(&base.name, "runtime").is_empty();
        let files = !base.files.is_empty() && self.opts.layers != LayerPolicy::Single;
        below + usize::from(configure) + usize::from(files)
    }

    /// Every image's package layers and build-stage root, in parallel; they
    /// are remembered (`done`) for when the image asks for them. A step
    /// that fails here fails its image, not the base: every step is tried,
    /// and the image's own chain runs a failed one again and reports it.
    /// Whether every step was written.
    fn early_layers(&self, symlinks: &Arc<BTreeSet<String>>, budget_layers: usize) -> bool {
        let mut steps: Vec<LayerStep> = Vec::new();
        for img in &self.tree.images {
            steps.extend(
                self.image_package_steps(img, symlinks, budget_layers)
                    .into_iter()
                    .map(|s| s.0),
            );
            steps.extend(self.stage_root_step(img, symlinks));
        }
        steps
            .par_iter()
            .map(|s| self.layer(s).is_ok())
            .reduce(|| true, |a, b| a && b)
    }

    /// The base's layer steps under the layer policy.
    fn base_steps(
        &self,
        vendor: bool,
        merged: &Arc<BTreeSet<String>>,
    ) -> Vec<(LayerStep<'a>, History)> {
        let base = &self.tree.base;
        let pkgs = self.closure(&base.name, "runtime");
        let mut steps: Vec<(LayerStep, History)> = Vec::new();
        match self.opts.layers {
            LayerPolicy::Single => {
                let mut parts = Vec::new();
                if !vendor {
                    parts.push(Part::MergedUsr);
                }
                parts.push(Part::Packages(pkgs.clone()));
                parts.push(Part::Files(base));
                steps.push((
                    LayerStep {
                        label: "base".into(),
                        parts,
                        lower: Arc::default(),
                        scratch: false,
                    },
                    hist(
                        format!("imgforge: base packages {}", names(pkgs.iter().copied())),
                        Some("merged-/usr root with dpkg status.d metadata"),
                    ),
                ));
            }
            LayerPolicy::Budget(n) => {
                if !vendor {
                    steps.push((
                        LayerStep {
                            label: "root".into(),
                            parts: vec![Part::MergedUsr],
                            lower: Arc::default(),
                            scratch: false,
                        },
                        hist("imgforge: merged-/usr root".into(), None),
                    ));
                }
                steps.extend(self.package_steps(pkgs.clone(), group::base_cap(n), merged, "base"));
            }
        }
        steps
    }

    fn files_step<'r>(
        &self,
        r: &'r Recipe,
        lower: &Arc<BTreeSet<String>>,
    ) -> (LayerStep<'r>, History) {
        (
            LayerStep {
                label: format!("{} files", r.name),
                parts: vec![Part::Files(r)],
                lower: lower.clone(),
                scratch: false,
            },
            hist(format!("imgforge: {} recipe file(s)", r.files.len()), None),
        )
    }

    /// An image's own layers: packages, files, configuration, artifacts.
    /// The runtime layers and the build stage each run to their end (what
    /// they made is stored) even when the other fails; every failure is
    /// returned, the runtime's first.
    pub fn image(&self, img: &Recipe, base: &BaseBuilt) -> Result<ImageBuilt, Vec<anyhow::Error>> {
        let (runtime, artifacts) = rayon::join(
            || self.image_runtime(img, base),
            || self.build_stage(img, base),
        );
        let ((mut layers, mut history, packages), artifacts) = match (runtime, artifacts) {
            (Ok(r), Ok(a)) => (r, a),
            (r, a) => return Err(r.err().into_iter().chain(a.err()).collect()),
        };
        let mut files = Vec::new();
        if let Some((rec, f, h)) = artifacts {
            layers.push(rec.blob());
            history.push(h);
            files = f;
        }
        Ok(ImageBuilt {
            layers,
            history,
            artifacts: files,
            packages,
        })
    }

    fn image_runtime(
        &self,
        img: &Recipe,
        base: &BaseBuilt,
    ) -> Result<(Vec<LayerBlob>, Vec<History>, Vec<LayerRecord>)> {
        let steps = self.image_package_steps(img, &base.symlinks, base.budget_layers);
        let records = self.layers(&steps)?;
        let all: Vec<&LayerRecord> = base.packages.iter().chain(&records).collect();
        self.check_paths(&img.name, &all)?;
        let mut layers: Vec<LayerBlob> = records.iter().map(LayerRecord::blob).collect();
        let mut history: Vec<History> = steps.into_iter().map(|s| s.1).collect();
        let mut below = base.layers.clone();
        below.extend(layers.iter().cloned());
        let root = super::configure::Root {
            layers: &below,
            below: &[(self.tree.base.name.as_str(), "runtime")],
            scratch: false,
            lower: &base.symlinks,
            toolset: base.toolset.as_ref(),
        };
        if let Some(c) = self.configure(img, "runtime", &root)? {
            layers.push(c.blob());
            history.push(self.configure_history(&img.name, "runtime"));
        }
        if let Some((rec, h)) = self.dpkg_database(img, &base.symlinks)? {
            layers.push(rec.blob());
            history.push(h);
        }
        if let Some((rec, h)) = self.files_after_configure(img, &base.symlinks)? {
            layers.push(rec.blob());
            history.push(h);
        }
        Ok((layers, history, records))
    }

    /// An image's package layer steps (with its files under
    /// `--layers single`), grouped under the budget.
    fn image_package_steps<'r>(
        &self,
        img: &'r Recipe,
        symlinks: &Arc<BTreeSet<String>>,
        budget_layers: usize,
    ) -> Vec<(LayerStep<'r>, History)>
    where
        'a: 'r,
    {
        let pkgs = self.closure(&img.name, "runtime");
        let mut steps: Vec<(LayerStep, History)> = Vec::new();
        match self.opts.layers {
            LayerPolicy::Single => {
                if !pkgs.is_empty() || !img.files.is_empty() {
                    let files = if img.files.is_empty() {
                        String::new()
                    } else {
                        format!(" + {} recipe file(s)", img.files.len())
                    };
                    steps.push((
                        LayerStep {
                            label: img.name.clone(),
                            parts: vec![Part::Packages(pkgs.clone()), Part::Files(img)],
                            lower: symlinks.clone(),
                            scratch: false,
                        },
                        hist(
                            format!("imgforge: packages {}{files}", names(pkgs.iter().copied())),
                            None,
                        ),
                    ));
                }
            }
            LayerPolicy::Budget(n) => {
                let fixed = usize::from(!img.files.is_empty())
                    + usize::from(!pkgs.is_empty())
                    + usize::from(img.build.is_some())
                    + usize::from(self.shipped_with_dpkg(img).is_some());
                let cap = group::image_cap(n, budget_layers, fixed);
                if !pkgs.is_empty() {
                    steps.extend(self.package_steps(pkgs.clone(), cap, symlinks, &img.name));
                }
            }
        }
        steps
    }

    /// Under a layer budget, a recipe's `[[files]]` go above its
    /// configuration (as a `COPY` after `RUN apt-get install`): the files
    /// win over what maintainer scripts wrote, and changing a file never
    /// runs the scripts again. (`--layers single` keeps them in the
    /// package layer, configured with it.)
    fn files_after_configure(
        &self,
        r: &Recipe,
        lower: &BTreeSet<String>,
    ) -> Result<Option<(LayerRecord, History)>> {
        if r.files.is_empty() || self.opts.layers == LayerPolicy::Single {
            return Ok(None);
        }
        let (step, h) = self.files_step(r, &Arc::new(lower.clone()));
        Ok(Some((self.layer(&step)?, h)))
    }

    /// Every package an image ships (the base's, then its own), when one
    /// of them is dpkg: such an image gets dpkg's database, as `apt-get
    /// install` would have left it.
    fn shipped_with_dpkg(&self, img: &Recipe) -> Option<Vec<&'a LockedPackage>> {
        let mut all = self.closure(&self.tree.base.name, "runtime");
        all.extend(self.closure(&img.name, "runtime"));
        all.iter().any(|p| p.name == "dpkg").then_some(all)
    }

    /// The dpkg database layer of an image that ships dpkg.
    fn dpkg_database(
        &self,
        img: &Recipe,
        lower: &Arc<BTreeSet<String>>,
    ) -> Result<Option<(LayerRecord, History)>> {
        let Some(all) = self.shipped_with_dpkg(img) else {
            return Ok(None);
        };
        let n = all.len();
        let step = LayerStep {
            label: format!("{} dpkg database", img.name),
            parts: vec![Part::DpkgDatabase(all)],
            lower: lower.clone(),
            scratch: false,
        };
        let h = hist(
            format!("imgforge: dpkg database of {n} package(s)"),
            Some("var/lib/dpkg/status and info/*.list, *.md5sums"),
        );
        Ok(Some((self.layer(&step)?, h)))
    }

    pub fn configure_history(&self, name: &str, stage: &str) -> History {
        hist(
            format!("imgforge: configure {}", names(self.closure(name, stage))),
            Some("maintainer scripts and triggers"),
        )
    }
}
