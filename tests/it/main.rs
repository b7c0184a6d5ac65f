//! The integration test binary: one module per area.
//!
//! Tests that need real packages use `../shared/debian` (see
//! [`common::fixture`]); tests that need external tools (runc, docker,
//! skopeo, umoci, oci-image-tool, pyspdxtools, syft, docker-registry) skip with a message when
//! the tool is missing, and fail instead when `IMGFORGE_REQUIRE_TOOLS=1`
//! (set by `.ci/run`). Such tests are declared with `needs!` (see
//! `common.rs`), which `#[macro_use]` makes usable in every module below.

#[macro_use]
mod common;
mod debgen;

mod archive;
mod attest;
mod build;
mod buildkit;
mod bundle;
mod configure;
mod firsthour;
mod hostile;
mod integrity;
mod licenses;
mod lint;
mod multiarch;
mod outputs;
mod plan;
mod push;
mod realworld;
mod recipes;
mod remote_cache;
mod resolver;
mod rootless;
mod sandbox;
mod sbom;
mod sources;
mod vendor;
mod verify;
