//! imgforge: reproducible OCI images from pinned Debian packages.
//!
//! # Architecture
//!
//! `imgforge build recipes/` runs a pipeline; each stage is a module with one
//! entry point and an options struct, and its own error type:
//!
//! ```text
//!  recipe ──► resolve ──► plan ───────────────────────────────────────────► outputs
//!  (TOML,     (index,     content-addressed steps, run in parallel, each      (OCI layout
//!   pinning    closure,   reused from the step store when its key is there:   from store
//!   policy)    lock,      layer ──► configure ──► [sandbox: build stage]       blobs; SBOMs,
//!              fetch +    (a layer    (maintainer   ──► artifact layer ──►      reports,
//!              sha256)     per source  scripts)        image ──► sbom          per-image
//!                          package)                                            archives)
//!  verify: builds twice under perturbed conditions (fresh stores) and diffs.
//!  attest: an in-toto SLSA provenance statement per image (after sbom),
//!          signed into a DSSE envelope with the user's key; SBOMs and
//!          provenance attached to the images as OCI 1.1 referrers.
//!  registry: `push` sends a built layout to an OCI registry unchanged,
//!          referrers included (tag-schema fallback without the API).
//!  bundle: `bundle` packs an output into one signed tar (or a delta against
//!          a previous release or a site's inventory) with an upgrade report,
//!          for sites without network; `bundle verify` checks it offline,
//!          `bundle install` loads it into docker or a registry.
//! ```
//!
//! Dependencies point one way: `ops` (commands) → `plan` / `verify` /
//! `registry` → the stage modules → the leaves (`options`, `ui`, `fsutil`,
//! `json`, `digest`, `limits`), which import nothing of the crate. A unit
//! test (`layering.rs`) reads the sources and fails on an import cycle or a
//! dependency that points up.
//!
//! The workspace: this crate (library and the `imgforge` binary) and
//! `crates/deb` (`imgforge-deb`, re-exported as [`deb`]): the `.deb` reader,
//! which takes untrusted bytes and nothing else, so the fuzz target builds it
//! alone.
//!
//! * [`recipe`]: reads `base/base.toml` and `recipes/*.toml`, enforces pinning.
//! * [`archive`]: Debian archive client (signed Release, verified indexes,
//!   content-addressed package store, source packages for `sources`).
//! * [`pkgindex`]: the package index (mirror, archives) both fill and read.
//! * [`resolve`]: resolver, lock file (compare and write), fetching.
//! * [`deb`]: reading `.deb` files (control, data.tar) as untrusted input.
//! * [`layer`]: deterministic layer tars from packages, files and artifacts.
//! * [`configure`]: maintainer scripts and triggers run in the sandbox with
//!   a toolset that never ships; their changes become a configuration layer
//!   (between `layer` and `image`).
//! * [`image`]: OCI image layout, configs, manifests, the docker-load bundle.
//! * [`lint`]: the runtime lint: every shipped file's `#!` interpreter, ELF
//!   interpreter and libraries must resolve inside its image, and what the
//!   config runs must start.
//! * [`sandbox`]: build stages in an OCI runtime with no network, under
//!   per-step [`limits`] and a seccomp profile.
//! * [`sbom`]: license detection, SPDX and CycloneDX documents, legal reports.
//! * [`attest`]: in-toto SLSA provenance per image, DSSE signing and
//!   offline verification, OCI 1.1 referrers (`referrers/` layout).
//! * [`verify`]: reproducibility checks and first-difference diagnosis.
//! * [`metadata`]: machine-readable build results (`--format json`, `--metadata-file`).
//! * [`release`]: the Debian point release shipped; base tags must match it.
//! * [`bundle`]: courier bundles for sites without network: one tar that
//!   `docker load` reads and that is an OCI layout, with SBOMs, reports,
//!   provenance and a (signed) manifest of every blob; deltas against a
//!   previous release; streaming offline verification; install into docker.
//! * [`registry`]: pushes a layout's images to an OCI registry, digests kept.
//! * [`options`]: options structs shared by commands and stages, and the
//!   one place they become command-line flags again.
//! * [`ui`]: status lines and progress on stderr; [`fsutil`]: atomic writes.
//! * [`plan`]: the build as content-addressed steps with a step store:
//!   layers by source package, configuration, build stages, SBOMs, outputs;
//!   its scratch directory, and the sweep of those killed builds left.
//! * [`ops`]: the commands (one thin function and file each) taking options
//!   structs; `main.rs` only parses arguments and calls them.
//!
//! Determinism rules: no clock, umask, directory order, HashMap order,
//! locale or environment reaches an output. JSON goes through [`json`]
//! (sorted keys); tar entries are sorted; timestamps come from
//! `SOURCE_DATE_EPOCH`.

pub mod archive;
pub mod attest;
pub mod bundle;
pub mod configure;
pub use imgforge_deb as deb;
pub mod digest;
pub mod fsutil;
pub mod image;
pub mod json;
pub mod layer;
#[cfg(test)]
mod layering;
pub mod limits;
pub mod lint;
pub mod metadata;
pub mod ops;
pub mod options;
pub mod pkgindex;
pub mod plan;
pub mod recipe;
pub mod registry;
pub mod release;
pub mod resolve;
pub mod sandbox;
pub mod sbom;
pub mod ui;
pub mod verify;
