//! The runtime lint of every image (see [`crate::lint`]), before anything
//! replaces the previous output: an image whose config cannot start fails
//! the build.
//!
//! Two kinds of steps: `lint-layer`, a layer's facts, keyed by its digest
//! (and its path index's), so the base's layers are read once for every
//! image and every later build; and `lint`, an image's report, keyed by its
//! layers, what its config runs, the layer labels and every locked
//! package, so an unchanged rebuild reads no layer and no package. The
//! locked packages' path lists (for what would provide a missing file) are
//! read only when something is unresolved, through the `dpkg -L` lists the
//! configure steps keep in the store.

use super::exec::{BaseBuilt, Ctx, ImageBuilt};
use crate::image::{History, WrittenImage};
use crate::lint::{self, LayerFacts, Providers, Report, Start};
use crate::recipe::Config;
use crate::resolve::LockedPackage;
use anyhow::Result;
use rayon::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::Mutex;

/// Bumped when the facts or reports for the same inputs change.
const LINT_FORMAT: u32 = 1;

/// Format of the `dpkg -L` lists shared with the configure steps
/// (`plan::configure`): NUL-separated paths, as
/// `layer::package::package_paths` gives them.
const LIST_DIR: &str = "dpkg-lists/v1";

impl super::store::StepRecord for Report {
    const KIND: &'static str = "lint";
    fn blobs(&self) -> Vec<String> {
        Vec::new()
    }
}

impl super::store::StepRecord for LayerFacts {
    const KIND: &'static str = "lint-layer";
    fn blobs(&self) -> Vec<String> {
        Vec::new()
    }
}

/// One image to lint.
struct Job<'w> {
    image: &'w WrittenImage,
    start: Start,
    labels: Vec<String>,
    key: String,
}

/// What a layer of an image is, for files no package ships.
fn label(h: &History) -> String {
    let c = h
        .created_by
        .strip_prefix("imgforge: ")
        .unwrap_or(&h.created_by);
    let l = if h.comment.as_deref() == Some("vendor base image") {
        "base image"
    } else if c.starts_with("configure ") {
        "configuration"
    } else if c.contains("recipe file") {
        "recipe files"
    } else if c.starts_with("build-stage artifacts") {
        "build artifacts"
    } else if c.starts_with("merged-/usr") {
        "merged-/usr root"
    } else {
        "packages"
    };
    l.to_string()
}

impl Ctx<'_> {
    /// Lint every image (the base first), warn about what is unresolved,
    /// and return the reports by `name:tag`.
    pub fn lint(
        &self,
        images: &[WrittenImage],
        base: &BaseBuilt,
        built: &[ImageBuilt],
    ) -> Result<BTreeMap<String, Report>> {
        let indexes: BTreeMap<&str, &str> = base
            .packages
            .iter()
            .chain(built.iter().flat_map(|b| &b.packages))
            .filter_map(|r| Some((r.digest.as_str(), r.paths.as_deref()?)))
            .collect();
        let jobs: Vec<Job> = images
            .iter()
            .enumerate()
            .map(|(i, w)| self.lint_job(i, w, base, built, &indexes))
            .collect();
        let cached: Vec<Option<Report>> =
            jobs.iter().map(|j| self.recall::<Report>(&j.key)).collect();
        let mut wanted: Vec<&str> = jobs
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .flat_map(|(j, _)| j.image.layers.iter().map(|l| l.digest.as_str()))
            .collect();
        wanted.sort();
        wanted.dedup();
        let facts: BTreeMap<&str, LayerFacts> = wanted
            .par_iter()
            .map(|d| Ok((*d, self.layer_facts(d, indexes.get(d).copied())?)))
            .collect::<Result<_>>()?;
        let one_at_a_time = Mutex::new(());
        let known = |wanted: &BTreeSet<String>| self.providers(&one_at_a_time, wanted);
        let reports: Vec<Report> = jobs
            .par_iter()
            .zip(cached)
            .map(|(j, c)| self.lint_image(j, c, &facts, &known))
            .collect::<Result<_>>()?;
        let mut out = BTreeMap::new();
        for (j, r) in jobs.iter().zip(reports) {
            if let Some(w) = r.warning(&j.image.reference()) {
                self.st.say("Warning", w);
            }
            out.insert(j.image.reference(), r);
        }
        Ok(out)
    }

    /// Image `i` (0 is the base): what its config runs, its layers' labels
    /// and its report's key.
    fn lint_job<'w>(
        &self,
        i: usize,
        w: &'w WrittenImage,
        base: &BaseBuilt,
        built: &[ImageBuilt],
        indexes: &BTreeMap<&str, &str>,
    ) -> Job<'w> {
        let (config, history): (Config, Vec<&History>) = match i {
            0 => (base.config.clone(), base.history.iter().collect()),
            _ => (
                super::merge_config(&base.config, &self.tree.images[i - 1].config),
                base.history.iter().chain(&built[i - 1].history).collect(),
            ),
        };
        let start = Start::new(
            config.entrypoint.as_deref(),
            config.cmd.as_deref(),
            &config.env,
            config.workdir.as_deref(),
        );
        let labels: Vec<String> = history.into_iter().map(label).collect();
        let mut known: Vec<[&String; 3]> = self
            .lock
            .images
            .iter()
            .flat_map(|l| &l.packages)
            .map(|p| [&p.name, &p.version, &p.sha256])
            .collect();
        known.sort();
        known.dedup();
        let layers: Vec<(&str, Option<&str>)> = w
            .layers
            .iter()
            .map(|l| (l.digest.as_str(), indexes.get(l.digest.as_str()).copied()))
            .collect();
        let key = super::key::key(
            "lint",
            &json!({
                "format": LINT_FORMAT,
                "layers": layers,
                "labels": labels,
                "start": [&start.program, start.field, &start.path, &start.ld_library_path, &start.workdir],
                "arch": self.tree.source.arch,
                "known": known,
                "max_entries": self.opts.max_package_entries,
            }),
        );
        Job {
            image: w,
            start,
            labels,
            key,
        }
    }

    /// The report of `job`: `cached`, or checked now and stored.
    fn lint_image(
        &self,
        job: &Job,
        cached: Option<Report>,
        facts: &BTreeMap<&str, LayerFacts>,
        known: lint::Known,
    ) -> Result<Report> {
        if let Some(r) = cached {
            self.count.reused("lint");
            self.share(&job.key, &r);
            return Ok(r);
        }
        let reference = job.image.reference();
        let layers = job
            .image
            .layers
            .iter()
            .zip(&job.labels)
            .map(|(l, label)| lint::LayerView {
                facts: &facts[l.digest.as_str()],
                label: label.clone(),
            })
            .collect();
        let report = lint::check(&lint::LintOptions {
            image: &reference,
            layers,
            start: job.start.clone(),
            arch: &self.tree.source.arch,
            known,
        })?;
        self.keep(&job.key, &report)?;
        self.count.built("lint");
        Ok(report)
    }

    /// A layer's facts, from the store or read now.
    fn layer_facts(&self, digest: &str, index: Option<&str>) -> Result<LayerFacts> {
        let key = super::key::key(
            "lint-layer",
            &json!({"format": LINT_FORMAT, "layer": digest, "index": index}),
        );
        if let Some(f) = self.recall::<LayerFacts>(&key) {
            self.count.reused("lint-layer");
            self.share(&key, &f);
            return Ok(f);
        }
        let blob = self.store.blob(digest);
        let index = index.map(|i| self.store.blob(i));
        let f = lint::scan_layer(&blob, index.as_deref())?;
        self.keep(&key, &f)?;
        self.count.built("lint-layer");
        Ok(f)
    }

    /// The locked packages that ship any of `wanted`, from their path
    /// lists, one package at a time. One image asks at a time (`lock`),
    /// so a list is read from its package once; nothing here waits for
    /// rayon work, which could be another image asking for the same lock.
    fn providers(
        &self,
        lock: &Mutex<()>,
        wanted: &BTreeSet<String>,
    ) -> Result<Providers, lint::BoxError> {
        let _one = lock.lock().expect("providers");
        let mut pkgs: Vec<&LockedPackage> =
            self.lock.images.iter().flat_map(|l| &l.packages).collect();
        pkgs.sort_by(|a, b| (&a.name, &a.sha256).cmp(&(&b.name, &b.sha256)));
        pkgs.dedup_by(|a, b| a.sha256 == b.sha256);
        let mut out = Providers::new();
        for p in pkgs {
            self.package_paths(p, &mut |path| {
                if wanted.contains(path) {
                    out.entry(path.to_string())
                        .or_default()
                        .insert(p.name.clone());
                }
            })?;
        }
        Ok(out)
    }

    /// Each path `p` installs, from the store's `dpkg -L` list, read a
    /// path at a time, or from the package now (the list is remembered).
    fn package_paths(&self, p: &LockedPackage, each: &mut dyn FnMut(&str)) -> Result<()> {
        let opts = self.package_options();
        let rel = std::path::Path::new(LIST_DIR).join(format!(
            "{}-{}",
            p.sha256.trim_start_matches("sha256:"),
            opts.limits.entries
        ));
        self.store.mark(&rel);
        let memo = self.store.root().join(rel);
        if let Ok(f) = std::fs::File::open(&memo) {
            for path in std::io::BufReader::new(f).split(0) {
                let path = path?;
                if !path.is_empty() {
                    each(&String::from_utf8_lossy(&path));
                }
            }
            return Ok(());
        }
        let f = self.inputs.get(p)?;
        let paths = crate::layer::package::package_paths(
            crate::layer::package::PackageRef {
                name: &p.name,
                deb: &f.deb,
                control: &f.control,
            },
            &opts,
        )?;
        let bytes: Vec<u8> = paths
            .iter()
            .flat_map(|l| [l.as_bytes(), b"\0"].concat())
            .collect();
        if let Some(dir) = memo.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_atomic(&memo, &bytes)?;
        paths.iter().for_each(|l| each(l));
        Ok(())
    }
}
