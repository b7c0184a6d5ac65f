//! The build plan: `imgforge build` as content-addressed steps.
//!
//! ```text
//!  lock ─► layer steps ──────► configure steps ─► image config + manifest ─► SBOM step
//!          (merged-/usr root,   (maintainer        (cheap: written every      (SPDX, CycloneDX,
//!           a layer per source   scripts per        build)                     legal reports)
//!           package group,       root)                 │
//!           recipe files,           build-stage step ──┘ per-image archives, bundle, record
//!           build/toolset roots)    (sandbox + artifact layer)
//! ```
//!
//! Every step's key ([`key`]) is the sha256 of its inputs (package sha256s
//! from the lock, the digests of the layers below, recipe file hashes,
//! settings) salted with the plan format and imgforge's sources. Results
//! live in the [`store`] under `<cache>/plan`. `build` runs only the steps
//! whose key is missing, in parallel on the rayon pool ([`exec`]), fetches
//! and reads a `.deb` only when a step that needs it runs ([`inputs`]), and
//! assembles the OCI layout in a staging directory from store blobs (hard
//! links) before renaming it into place ([`outputs`]). An unchanged
//! rebuild therefore reads no package and compresses nothing.
//!
//! Layers follow the packages' source packages ([`group`]) under a layer
//! budget per image (`--layers`, default 16), so a security update of one
//! source package changes one layer of each image that ships it.
//! With `--no-cache` the plan runs against a fresh, temporary store.

pub mod configure;
pub mod exec;
pub mod failed;
pub mod files;
pub mod group;
pub mod inputs;
pub mod key;
pub mod layers;
pub mod lint;
pub mod outputs;
pub mod prune;
pub mod record;
pub mod remote;
pub mod scratch;
pub mod stage;
pub mod store;

use crate::image::{self, WrittenImage};
use crate::options::BuildOptions;
use crate::pkgindex::Index;
use crate::recipe::{self, Config, Tree};
use crate::resolve::{self, Lock, SourceOptions};
use crate::ui::Status;
use anyhow::{Context, Result, bail};
use exec::{BaseBuilt, Ctx, ImageBuilt};
pub use failed::{BuildFailed, ImageFailure};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    pub images: Vec<WrittenImage>,
    pub out: PathBuf,
    /// Bytes of shipped layer tar (uncompressed) in the images.
    pub layer_bytes: u64,
    /// Steps taken from the store.
    pub reused_steps: usize,
    /// Steps run.
    pub run_steps: usize,
    /// Packages fetched and read (0 when every step was reused).
    pub packages_read: usize,
    /// Steps fetched from a remote cache (counted in `reused_steps` too).
    pub remote_steps: usize,
    /// Steps uploaded to a remote cache.
    pub uploaded_steps: usize,
    /// The runtime lint of each image, by `name:tag`.
    pub lint: BTreeMap<String, crate::lint::Report>,
}

/// `imgforge build`: resolve (or read the lock), run the plan, write the
/// outputs and the metadata.
pub fn build(opts: &BuildOptions) -> Result<BuildSummary> {
    let st = Status { quiet: opts.quiet };
    let t0 = Instant::now();
    image::compat::check_bundle(opts.compression, opts.bundle.is_some(), opts.force)?;
    let tree = crate::recipe::load_tree(&crate::recipe::LoadOptions::new(&opts.common))?;
    // Another architecture's scripts and stages run under qemu-user: say
    // what is missing before anything is fetched or run.
    crate::sandbox::binfmt::check(&tree.source.arch, None)?;
    let src = resolve::SourceOptions::new(&opts.common, false);
    let index = resolve::load_index(&tree, &src)?;
    let lock = resolve::lockfile::lock_for_build(&tree, &index, opts.locked, st)?;
    let drifted = resolve::drift::locked(&lock, &index, &src.cache_dir);
    resolve::drift::report(&drifted, "locked", &tree.dir)?;
    let sde = source_date_epoch(opts, &tree)?;
    crate::limits::raise_open_files();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs())
        .build()
        .context("cannot start worker threads")?;
    let t_plan = t0.elapsed();
    let summary = pool.install(|| run(opts, &tree, &index, &src, &lock, sde, st))?;
    let meta = crate::json::to_canonical_pretty(&crate::metadata::document(
        &summary.images,
        &summary.lint,
    ));
    if let Some(f) = &opts.metadata_file {
        if let Some(p) = f.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        crate::fsutil::write_atomic(f, &meta)?;
        st.say("Metadata", f.display());
    }
    if opts.json {
        use std::io::Write;
        std::io::stdout().write_all(&meta)?;
    }
    st.say(
        "Finished",
        format!(
            "{} image(s) in {:.2}s (recipes, index and lock {:.2}s) -> {}",
            summary.images.len(),
            t0.elapsed().as_secs_f64(),
            t_plan.as_secs_f64(),
            summary.out.display()
        ),
    );
    Ok(summary)
}

/// `SOURCE_DATE_EPOCH`: options, then environment, then the base recipe.
fn source_date_epoch(opts: &BuildOptions, tree: &Tree) -> Result<i64> {
    if let Some(s) = opts.source_date_epoch {
        return Ok(s);
    }
    if let Ok(s) = std::env::var("SOURCE_DATE_EPOCH") {
        return s.trim().parse::<i64>().ok().filter(|v| *v >= 0).with_context(|| {
            format!("SOURCE_DATE_EPOCH={s:?} is not a non-negative integer\nhelp: set it to seconds since 1970-01-01 UTC, or unset it to use the base recipe's source-date-epoch")
        });
    }
    tree.source_date_epoch().context(
        "no SOURCE_DATE_EPOCH: imgforge never reads the clock\nhelp: set source-date-epoch in base/base.toml's [image] section, or export SOURCE_DATE_EPOCH",
    )
}

/// The output directory's parent, and a refusal to replace a directory
/// that is not an imgforge output.
fn out_parent(out: &Path) -> Result<PathBuf> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    if out.exists() && !out.join("oci-layout").is_file() && !is_empty_dir(out) {
        bail!(
            "{} exists and is not an imgforge output (no oci-layout file)\nhelp: choose another --out, or remove it yourself",
            out.display()
        );
    }
    Ok(parent)
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// This build's scratch directory (see [`scratch::parent`]), after the
/// stale ones killed builds left there and beside the output are swept.
fn scratch_for(
    opts: &BuildOptions,
    lock: &Lock,
    parent: &Path,
    st: Status,
) -> Result<tempfile::TempDir> {
    // Decompressed copies and layer trees: about eight times the packages.
    let need: u64 = lock
        .images
        .iter()
        .flat_map(|i| &i.packages)
        .map(|p| p.size.saturating_mul(8))
        .sum();
    let scratch_parent = scratch::parent(opts.scratch.as_deref(), need, parent);
    sweep_scratch(parent, st);
    if scratch_parent != parent {
        sweep_scratch(&scratch_parent, st);
    }
    scratch_dir(&scratch_parent)
}

/// This build's scratch directory in `parent`, its owner recorded.
fn scratch_dir(parent: &Path) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(scratch::PREFIX)
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    scratch::claim(work.path())
        .with_context(|| format!("cannot write in {}", work.path().display()))?;
    Ok(work)
}

/// An image's own layers, or every failure of its chain.
type ImageResult = std::result::Result<ImageBuilt, Vec<anyhow::Error>>;

/// The base, then every image in parallel, each to its end whatever the
/// others do (see [`failed`]); the images' results in recipe order. The
/// scope ends when the license detection the base may start in it has
/// finished too.
fn base_and_images(
    ctx: &Ctx,
    vendor: Option<&image::vendor::Imported>,
) -> Result<(BaseBuilt, Vec<ImageResult>)> {
    rayon::scope(|s| {
        let base = ctx.base(vendor, s)?;
        let built = ctx
            .tree
            .images
            .par_iter()
            .map(|img| ctx.image(img, &base))
            .collect();
        Ok((base, built))
    })
}

/// Remove what killed builds left beside the output, saying so.
fn sweep_scratch(parent: &Path, st: Status) {
    let swept = scratch::sweep(parent);
    if !swept.dirs.is_empty() {
        st.say(
            "Cleaned",
            format!(
                "{} scratch director{} left by killed builds ({} mount(s) detached)",
                swept.dirs.len(),
                if swept.dirs.len() == 1 { "y" } else { "ies" },
                swept.mounts
            ),
        );
    }
    for (dir, reason) in &swept.failed {
        st.say(
            "Warning",
            format!(
                "cannot remove {} left by a killed build: {reason}\nhelp: unmount what is mounted under it (as root) and remove it",
                dir.display()
            ),
        );
    }
}

/// The plan's store: the cache's, or a fresh one for `--no-cache`.
fn open_store(
    opts: &BuildOptions,
    parent: &Path,
) -> Result<(store::StepStore, Option<tempfile::TempDir>)> {
    if opts.use_cache {
        let root = opts.common.cache_dir().join("plan");
        return Ok((store::StepStore::open(&root)?, None));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".imgforge-store-")
        .tempdir_in(parent)?;
    Ok((store::StepStore::open(tmp.path())?, Some(tmp)))
}

#[allow(clippy::too_many_arguments)]
fn run(
    opts: &BuildOptions,
    tree: &Tree,
    index: &Index,
    src: &SourceOptions,
    lock: &Lock,
    sde: i64,
    st: Status,
) -> Result<BuildSummary> {
    let parent = out_parent(&opts.out)?;
    let work = scratch_for(opts, lock, &parent, st)?;
    let (store, _fresh) = open_store(opts, &parent)?;
    let remote =
        remote::Remotes::open(&opts.remote, &tree.source.cache, opts.use_cache, &store, st);
    let ctx = Ctx {
        opts,
        tree,
        lock,
        inputs: inputs::Inputs::new(
            lock,
            index,
            src,
            crate::deb::Limits {
                entries: opts.max_package_entries,
                ..Default::default()
            },
        ),
        store,
        sde: sde as u64,
        st,
        count: exec::Counter::with_progress(st.progress("building")),
        done: Default::default(),
        work: work.path().to_path_buf(),
        plain: std::sync::Arc::new(crate::deb::plain::PlainCache::new(
            &work.path().join("plain"),
        )),
        trees: std::sync::Arc::new(crate::sandbox::overlay::Trees::new(
            &work.path().join("trees"),
        )),
        remote,
    };
    ctx.check_release()?;
    let vendor = vendor_base(&ctx)?;
    let t = Instant::now();
    let (base, built) = base_and_images(&ctx, vendor.as_ref())?;
    let names: Vec<&str> = tree.images.iter().map(|i| i.name.as_str()).collect();
    let built = failed::check(&names, built, &opts.out)?;
    let t_layers = t.elapsed();
    // Every root is configured: remove the layer trees (thousands of files)
    // while the outputs are written, not after.
    let trees = work.path().join("trees");
    let remover = std::thread::spawn(move || std::fs::remove_dir_all(trees));
    let staging = tempfile::Builder::new()
        .prefix(".imgforge-build-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    let layout = staging.path();
    let t = Instant::now();
    let images = write_images(&ctx, layout, &base, &built)?;
    let lint = ctx.lint(&images, &base, &built)?;
    let needs_review = ctx.sboms(layout, &images, &built)?;
    // Provenance and referrers: cheap, deterministic (Ed25519 and RFC 6979
    // ECDSA signatures), written on every build.
    let attest = crate::attest::write_all(&crate::attest::AttestOptions {
        layout,
        tree,
        lock,
        images: &images,
        parameters: crate::attest::parameters(&opts.compression, sde),
        sign_key: opts.sign_key.as_deref(),
    })?;
    st.say("Provenance", crate::attest::describe(&attest));
    let known = ctx.per_image(layout, &images)?;
    record::write(layout, &images, sde, &known)?;
    if let Some(bundle) = &opts.bundle {
        write_bundle(&ctx, layout, &images, bundle)?;
    }
    let t_outputs = t.elapsed();
    let _ = remover.join();
    replace_dir(&staging.keep(), &opts.out)?;
    if opts.use_cache {
        // What `imgforge gc` keeps for this tree.
        ctx.store.write_root(&tree.dir)?;
    }
    // Uploads to a remote cache ran beside the build: wait for the last.
    ctx.remote.finish();
    report(&ctx, &images, needs_review, t_layers, t_outputs);
    let (reused, run) = ctx.count.totals();
    Ok(BuildSummary {
        layer_bytes: shipped_bytes(&images),
        images,
        out: opts.out.clone(),
        reused_steps: reused,
        run_steps: run,
        packages_read: ctx.inputs.fetched(),
        remote_steps: ctx.remote.counts().0,
        uploaded_steps: ctx.remote.counts().1,
        lint,
    })
}

fn shipped_bytes(images: &[WrittenImage]) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    images
        .iter()
        .flat_map(|i| i.layers.iter())
        .filter(|l| seen.insert(l.digest.clone()))
        .map(|l| l.tar_size)
        .sum()
}

fn report(
    ctx: &Ctx,
    images: &[WrittenImage],
    needs_review: usize,
    layers: std::time::Duration,
    outputs: std::time::Duration,
) {
    let st = ctx.st;
    if needs_review > 0 {
        st.say(
            "Review",
            format!("{needs_review} package(s) flagged for legal review (see legal/all.md)"),
        );
    }
    for img in images {
        st.say(
            "Image",
            format!(
                "{} {} ({} layers, {})",
                img.reference(),
                img.manifest.digest,
                img.layers.len(),
                crate::metadata::human(img.layers.iter().map(|l| l.size).sum())
            ),
        );
    }
    let kinds: Vec<String> = ctx
        .count
        .by_kind()
        .iter()
        .map(|(k, r, b)| format!("{k} {r}/{}", r + b))
        .collect();
    let (reused, run) = ctx.count.totals();
    let remote = match ctx.remote.any() {
        true => format!(" (remote {})", ctx.remote.counts().0),
        false => String::new(),
    };
    st.say(
        "Steps",
        format!(
            "reused {reused}{remote}, ran {run} ({}); {} package(s) read; layers and stages {:.2}s, outputs {:.2}s",
            kinds.join(", "),
            ctx.inputs.fetched(),
            layers.as_secs_f64(),
            outputs.as_secs_f64()
        ),
    );
    if ctx.remote.any() {
        let (fetched, uploaded) = ctx.remote.counts();
        st.say(
            "Cache",
            format!(
                "{}: {fetched} step(s) fetched, {uploaded} uploaded",
                ctx.remote.names().join(", ")
            ),
        );
    }
}

/// A vendor base (pinned by digest, from a local OCI layout) goes below;
/// images never name their own `from`.
fn vendor_base(ctx: &Ctx) -> Result<Option<image::vendor::Imported>> {
    let tree = ctx.tree;
    for img in &tree.images {
        if let recipe::From::Pinned { reference, .. } = &img.from {
            bail!(
                "{}: from = {reference:?}: every image is built on the common base\nhelp: remove `from` from the recipe, or move the vendor image to base/base.toml",
                img.file.display()
            );
        }
    }
    match &tree.base.from {
        recipe::From::Pinned {
            digest,
            layout: Some(l),
            ..
        } => {
            ctx.st
                .say("Importing", format!("{} from {}", digest, l.display()));
            let v = image::vendor::import(l, digest, &ctx.store.blobs_dir())?;
            // Hashed as they were copied in: stored like any step's blob.
            for layer in &v.layers {
                ctx.store.seal_blob(&layer.digest)?;
            }
            Ok(Some(v))
        }
        recipe::From::Pinned { reference, .. } => bail!(
            "{reference}: no from-layout to read it from\nhelp: add from-layout = \"path/to/oci-layout\""
        ),
        _ => Ok(None),
    }
}

/// Merge a recipe's config over the base's.
fn merge_config(base: &Config, img: &Config) -> Config {
    let mut c = base.clone();
    c.env.extend(img.env.clone());
    c.labels.extend(img.labels.clone());
    if img.entrypoint.is_some() {
        c.entrypoint = img.entrypoint.clone();
        c.cmd = None;
    }
    if img.cmd.is_some() {
        c.cmd = img.cmd.clone();
    }
    if img.workdir.is_some() {
        c.workdir = img.workdir.clone();
    }
    if img.user.is_some() {
        c.user = img.user.clone();
    }
    if img.stop_signal.is_some() {
        c.stop_signal = img.stop_signal.clone();
    }
    c.expose.extend(img.expose.clone());
    c.expose.sort();
    c.expose.dedup();
    c
}

/// Link every layer into the staging layout and write each image's config
/// and manifest (the base first: the others are annotated with its digest),
/// then the index.
fn write_images(
    ctx: &Ctx,
    layout: &Path,
    base: &exec::BaseBuilt,
    built: &[ImageBuilt],
) -> Result<Vec<WrittenImage>> {
    let tree = ctx.tree;
    let blobs = layout.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("cannot create {}", blobs.display()))?;
    let spec =
        |name: &str, tag: &str, config: Config, layers: Vec<_>, history: Vec<_>| image::ImageSpec {
            name: name.to_string(),
            tag: tag.to_string(),
            config,
            layers,
            history,
            source_date_epoch: ctx.sde as i64,
            arch: tree.source.arch.clone(),
            annotations: BTreeMap::new(),
        };
    let mut specs = vec![spec(
        &tree.base.name,
        &tree.base.tag,
        base.config.clone(),
        base.layers.clone(),
        base.history.clone(),
    )];
    for (img, b) in tree.images.iter().zip(built) {
        let mut layers = base.layers.clone();
        layers.extend(b.layers.iter().cloned());
        let mut history = base.history.clone();
        history.extend(b.history.iter().cloned());
        let mut s = spec(
            &img.name,
            &img.tag,
            merge_config(&base.config, &img.config),
            layers,
            history,
        );
        s.annotations.insert(
            "org.opencontainers.image.base.name".into(),
            tree.base.reference(),
        );
        specs.push(s);
    }
    for l in specs.iter().flat_map(|s| s.layers.iter()) {
        let hex = l.digest.trim_start_matches("sha256:");
        ctx.ship_blob(&l.digest, &blobs.join(hex))
            .with_context(|| format!("cannot put layer {} into {}", l.digest, blobs.display()))?;
    }
    let base_written = image::write_image(&specs[0], &blobs)?;
    let mut images = vec![base_written.clone()];
    for s in &mut specs[1..] {
        s.annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            base_written.manifest.digest.clone(),
        );
        images.push(image::write_image(s, &blobs)?);
    }
    image::write_index(layout, &images)?;
    Ok(images)
}

/// `--bundle`: from the store when unchanged, put in place atomically.
fn write_bundle(ctx: &Ctx, layout: &Path, images: &[WrittenImage], bundle: &Path) -> Result<()> {
    let dir = bundle
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".imgforge-bundle-")
        .tempdir_in(&dir)?;
    let staged = tmp.path().join("bundle.tar");
    ctx.archive(layout, images, &staged)?;
    std::fs::rename(&staged, bundle)
        .with_context(|| format!("cannot write {}", bundle.display()))?;
    ctx.st.say("Bundle", bundle.display());
    Ok(())
}

/// Put `staged` at `out`, keeping the old output until the new one is in place.
fn replace_dir(staged: &Path, out: &Path) -> Result<()> {
    if !out.exists() {
        return std::fs::rename(staged, out)
            .with_context(|| format!("cannot move the new output to {}", out.display()));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let old = tempfile::Builder::new()
        .prefix(".imgforge-old-")
        .tempdir_in(parent)?;
    let old_path = old.path().join("out");
    std::fs::rename(out, &old_path)
        .with_context(|| format!("cannot move the previous {} aside", out.display()))?;
    if let Err(e) = std::fs::rename(staged, out) {
        let _ = std::fs::rename(&old_path, out);
        return Err(e).with_context(|| format!("cannot move the new output to {}", out.display()));
    }
    Ok(())
}

/// The point release base-files names (stored as a bare JSON string).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct ReleaseRecord(String);

impl store::StepRecord for ReleaseRecord {
    const KIND: &'static str = "release";
    const COUNTED: bool = false;
    fn blobs(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Ctx<'_> {
    /// The Debian point release the base ships must match its tag (the
    /// release is read from base-files once and remembered by its sha256).
    fn check_release(&self) -> Result<()> {
        let Some(bf) = self
            .closure(&self.tree.base.name, "runtime")
            .into_iter()
            .find(|p| p.name == "base-files")
        else {
            return Ok(());
        };
        let key = key::key("release", &serde_json::json!([bf.sha256, bf.version]));
        let version = match self.recall::<ReleaseRecord>(&key) {
            Some(v) => {
                self.share(&key, &v);
                v.0
            }
            None => {
                let f = self.inputs.get(bf)?;
                let r = crate::release::read_release(&f.deb, &bf.version)?;
                self.keep(&key, &ReleaseRecord(r.version.clone()))?;
                r.version
            }
        };
        let r = crate::release::DebianRelease {
            version,
            base_files: bf.version.clone(),
        };
        crate::release::check_tag(&self.tree.base.file, &self.tree.base.tag, &r)?;
        Ok(())
    }
}
