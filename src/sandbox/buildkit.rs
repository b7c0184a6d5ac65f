//! Build stages on BuildKit (`--executor buildkit[=ADDR]`).
//!
//! The stage's key, its cache and its artifacts are the local sandbox's
//! (see the module above); only the steps run elsewhere, on the BuildKit of
//! a Docker Engine, reached through the docker CLI:
//!
//! 1. **Client.** A docker CLI that can run a BuildKit build: one with the
//!    buildx plugin (`docker buildx build`), or one older than 23, whose
//!    BuildKit client is built in (`DOCKER_BUILDKIT=1 docker build`). Every
//!    `docker` on `PATH` is tried in order, then `/usr/bin/docker`;
//!    `IMGFORGE_DOCKER` names the one to use. The engine is the one of
//!    `docker -H ADDR` when the executor names an address, else the one
//!    `DOCKER_HOST` or the current docker context names (a remote engine
//!    works: every byte goes through the API). BuildKit's own client
//!    (`buildctl`, `BUILDKIT_HOST`) is not used.
//! 2. **Base image.** The stage's layers (the base's, the stage packages'
//!    and their configuration, exactly the blobs the local sandbox
//!    unpacks) plus one layer holding what the sandbox adds before the
//!    first step (`/src` with the context, `/out`, `/tmp`, `/root`, owned
//!    by root, mtimes `SOURCE_DATE_EPOCH`) are loaded with `docker load` as
//!    one image whose config carries the sandbox's fixed environment and
//!    cwd `/src`. Its config is canonical JSON with no date, so its id is a
//!    digest of its content; the tag is `imgforge-stage:<id>-<unique>` and
//!    is removed when the stage ends, however it ends.
//! 3. **Steps.** A generated Dockerfile runs `FROM` that image, then one
//!    `RUN` per step in exec form (the step's argv as the sandbox runs it),
//!    each with `/src` bound read-only from the base image and a fresh
//!    tmpfs on `/tmp`, built with `--network none` (a network namespace
//!    with loopback only), `--no-cache` (the stage cache decides reuse,
//!    not BuildKit's) and `--progress plain`.
//! 4. **Result.** The stage's root comes back through the local exporter
//!    (`-o type=local`) into the work directory, and the artifacts are
//!    resolved and stored from it by the same code as the local sandbox
//!    ([`super::store`]): content and mode only, so BuildKit's timestamps
//!    and owners never reach the output.
//!
//! A failing step is found in the plain progress output (the vertex
//! `[imgforge-stage K/N] RUN` is step K-1): its output becomes the step's
//! log, kept under the log directory, and the error is the local sandbox's
//! [`SandboxError::StepFailed`]. The stage's time limit is the sum of its
//! steps' limits; the memory limit is the builder's own.

use super::{SandboxError, SandboxOptions, StageOutput, StageSpec, unpack::CtxEntry};
use crate::recipe::Step;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Repository of the loaded stage images, and the stage's name in the
/// generated Dockerfile (its vertices are named `[imgforge-stage K/N]`).
const STAGE: &str = "imgforge-stage";

/// The first docker CLI release whose `docker build` needs the buildx
/// plugin for BuildKit.
const BUILDX_ONLY_FROM: u32 = 23;

/// Why a stage could not run on BuildKit (a failing step is a
/// [`SandboxError::StepFailed`] instead).
#[derive(Debug, thiserror::Error)]
pub enum BuildkitError {
    #[error(
        "{recipe}: no docker client that can run a BuildKit build{detail}\nhelp: install Docker's buildx CLI plugin, or use a docker CLI older than 23 (its BuildKit client is built in; e.g. Debian 12's docker.io), or name one in IMGFORGE_DOCKER; or build with --executor runc"
    )]
    NoClient { recipe: String, detail: String },
    #[error(
        "{recipe}: the docker engine ({engine}) does not answer: {detail}\nhelp: start the daemon, or point DOCKER_HOST (or --executor buildkit=ADDR) at a running engine"
    )]
    NoEngine {
        recipe: String,
        engine: String,
        detail: String,
    },
    #[error("{recipe}: {what} failed: {detail}\nhelp: {help}")]
    Failed {
        recipe: String,
        what: String,
        detail: String,
        help: String,
    },
}

/// A docker CLI that can build with BuildKit.
#[derive(Debug, Clone)]
struct Client {
    bin: PathBuf,
    /// `docker buildx build`; else `DOCKER_BUILDKIT=1 docker build`.
    buildx: bool,
    /// `-H` for every command.
    host: Option<String>,
}

impl Client {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        if let Some(h) = &self.host {
            c.arg("-H").arg(h);
        }
        c.stdin(Stdio::null());
        c
    }

    fn engine(&self) -> String {
        match &self.host {
            Some(h) => h.clone(),
            None => std::env::var("DOCKER_HOST")
                .map(|h| format!("DOCKER_HOST={h}"))
                .unwrap_or_else(|_| "the docker context's".into()),
        }
    }
}

/// Run `spec`'s steps on BuildKit and store its artifacts under `key`.
pub fn run_stage(
    spec: &StageSpec,
    opts: &SandboxOptions,
    key: &str,
    host: Option<&str>,
) -> Result<StageOutput, SandboxError> {
    let client = find_client(&spec.recipe, host)?;
    check_engine(&spec.recipe, &client)?;
    std::fs::create_dir_all(&opts.work_dir).map_err(super::io_error("creating", &opts.work_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix("imgforge-buildkit-")
        .tempdir_in(&opts.work_dir)
        .map_err(super::io_error(
            "creating a build directory in",
            &opts.work_dir,
        ))?;
    let unique: String = tmp
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("stage")
        .trim_start_matches("imgforge-buildkit-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let image = load_base(spec, &client, tmp.path(), &unique)?;
    let ctx = tmp.path().join("context");
    std::fs::create_dir(&ctx).map_err(super::io_error("creating", &ctx))?;
    let dockerfile = ctx.join("Dockerfile");
    std::fs::write(&dockerfile, generate_dockerfile(&image.tag, &spec.steps))
        .map_err(super::io_error("writing", &dockerfile))?;
    let dest = tmp.path().join("root");
    let log = tmp.path().join("build.log");
    let deadline = spec.limits.timeout * u32::try_from(spec.steps.len()).unwrap_or(u32::MAX);
    let outcome = build(&client, &ctx, &dest, &log, deadline).map_err(|e| {
        failed(
            spec,
            "running docker build",
            e.to_string(),
            "check that the docker CLI works (`docker version`)",
        )
    })?;
    drop(image);
    if !outcome.ok {
        return Err(step_error(spec, opts, key, &log, outcome.timed_out));
    }
    let root = super::beneath::Root::open(&dest).map_err(super::io_error("opening", &dest))?;
    let store_dir = opts
        .cache_dir
        .clone()
        .unwrap_or_else(|| opts.work_dir.join("artifacts"));
    let artifacts = super::store::save(&spec.recipe, &root, &spec.artifacts, &store_dir, key)?;
    drop(root);
    let _ = tmp.close();
    Ok(StageOutput {
        artifacts,
        cached: false,
        cache_key: key.to_string(),
    })
}

fn failed(spec: &StageSpec, what: &str, detail: String, help: &str) -> SandboxError {
    BuildkitError::Failed {
        recipe: spec.recipe.clone(),
        what: what.to_string(),
        detail,
        help: help.to_string(),
    }
    .into()
}

// ---------------------------------------------------------------- client

/// The docker CLIs to try, in order.
fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("IMGFORGE_DOCKER") {
        return vec![PathBuf::from(p)];
    }
    let mut out: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("docker"))
                .collect()
        })
        .unwrap_or_default();
    out.push(PathBuf::from("/usr/bin/docker"));
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| p.is_file() && seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    out
}

/// The CLI's own version (`docker --version` asks no engine).
fn client_version(bin: &Path) -> Option<String> {
    let o = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let v = text.trim().strip_prefix("Docker version ")?;
    Some(v.split([',', ' ']).next()?.to_string())
}

fn find_client(recipe: &str, host: Option<&str>) -> Result<Client, BuildkitError> {
    let mut tried = Vec::new();
    for bin in candidates() {
        let buildx = Command::new(&bin)
            .args(["buildx", "version"])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        let version = client_version(&bin);
        let major = version
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
        if buildx || major.is_some_and(|m| m < BUILDX_ONLY_FROM) {
            return Ok(Client {
                bin,
                buildx,
                host: host.map(str::to_string),
            });
        }
        tried.push(format!(
            "{} ({}, no buildx plugin)",
            bin.display(),
            version.unwrap_or_else(|| "version unknown".into())
        ));
    }
    Err(BuildkitError::NoClient {
        recipe: recipe.to_string(),
        detail: if tried.is_empty() {
            " (no `docker` on PATH)".into()
        } else {
            format!(" (tried {})", tried.join(", "))
        },
    })
}

fn check_engine(recipe: &str, client: &Client) -> Result<(), BuildkitError> {
    let o = client
        .cmd()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match o {
        Ok(o) if o.status.success() => Ok(()),
        other => Err(BuildkitError::NoEngine {
            recipe: recipe.to_string(),
            engine: client.engine(),
            detail: match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            },
        }),
    }
}

// ---------------------------------------------------------------- base image

/// The loaded base image; its tag is removed on drop.
struct Loaded {
    client: Client,
    tag: String,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = self.client.cmd().args(["rmi", &self.tag]).output();
    }
}

/// The architecture name of this machine in image configs.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    }
}

/// Load the stage's layers and the sandbox's additions as one image.
fn load_base(
    spec: &StageSpec,
    client: &Client,
    tmp: &Path,
    unique: &str,
) -> Result<Loaded, SandboxError> {
    let top = tmp.join("top.tar");
    let top_diff = write_top_layer(spec, &top)?;
    let mut diff_ids = Vec::new();
    let mut blobs = Vec::new();
    for (i, l) in spec.layers.iter().enumerate() {
        let (diff_id, blob) = layer_for_docker(l, &tmp.join(format!("layer-{i}.tar")))
            .map_err(super::io_error("reading layer", l))?;
        diff_ids.push(diff_id);
        blobs.push(blob);
    }
    diff_ids.push(top_diff);
    let env = super::runtime::environment(spec.source_date_epoch, &spec.env);
    let config = json!({
        "architecture": arch(),
        "os": "linux",
        "config": {
            "Env": env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "WorkingDir": "/src",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = crate::json::to_canonical(&config);
    let id = crate::digest::sha256_hex(&config);
    let tag = format!("{STAGE}:{}-{unique}", &id[..24]);
    let mut files: Vec<(String, &Path)> = blobs
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("layer-{i}.tar"), l.as_path()))
        .collect();
    files.push(("layer-top.tar".into(), &top));
    let manifest = json!([{
        "Config": format!("{id}.json"),
        "RepoTags": [tag],
        "Layers": files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
    }]);
    let log = tmp.join("load.log");
    let loaded = Loaded {
        client: client.clone(),
        tag: tag.clone(),
    };
    let result = docker_load(client, &log, |w| {
        let mut b = tar::Builder::new(w);
        append_bytes(&mut b, &format!("{id}.json"), &config)?;
        append_bytes(&mut b, "manifest.json", &serde_json::to_vec(&manifest)?)?;
        for (name, path) in &files {
            let mut f = File::open(path)?;
            let len = f.metadata()?.len();
            let mut h = tar_header(tar::EntryType::Regular, 0o644, 0);
            h.set_size(len);
            b.append_data(&mut h, name, &mut f)?;
        }
        b.into_inner()?.flush()
    });
    match result {
        Ok(true) => Ok(loaded),
        Ok(false) => Err(failed(
            spec,
            "docker load of the build root",
            super::tail(&log, super::TAIL_LINES),
            "check the engine's free space and its log (the stage's layers are loaded as one image)",
        )),
        Err(e) => Err(failed(
            spec,
            "docker load of the build root",
            format!("{e}; {}", super::tail(&log, super::TAIL_LINES)),
            "check that the docker engine answers and has room for the stage's layers",
        )),
    }
}

/// A layer as `docker load` takes it, and its diff id: a gzip blob as it
/// is; any other (zstd: Docker 20.10 refuses some zstd frames with "invalid
/// tar header") decompressed into `plain`.
fn layer_for_docker(blob: &Path, plain: &Path) -> io::Result<(String, PathBuf)> {
    let mut magic = [0u8; 2];
    let gzip = File::open(blob)?.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let mut r = crate::layer::open_blob(blob)?;
    if gzip {
        let (hex, _) = crate::digest::sha256_reader(r)?;
        return Ok((format!("sha256:{hex}"), blob.to_path_buf()));
    }
    let mut w = crate::digest::HashWriter::new(BufWriter::new(File::create(plain)?));
    io::copy(&mut r, &mut w)?;
    let (mut f, hex, _) = w.finish();
    f.flush()?;
    Ok((format!("sha256:{hex}"), plain.to_path_buf()))
}

/// Run `docker load -q`, feeding its stdin with `write`; whether it loaded.
fn docker_load(
    client: &Client,
    log: &Path,
    write: impl FnOnce(&mut BufWriter<std::process::ChildStdin>) -> io::Result<()>,
) -> io::Result<bool> {
    let out = File::create(log)?;
    let mut child = client
        .cmd()
        .args(["load", "-q"])
        .stdin(Stdio::piped())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    let stdin = child.stdin.take().expect("piped stdin");
    let mut w = BufWriter::with_capacity(1 << 20, stdin);
    let wrote = write(&mut w).and_then(|()| w.flush());
    drop(w);
    let status = child.wait()?;
    match wrote {
        // A load that stopped reading says why in its log.
        Err(e) if status.success() => Err(e),
        _ => Ok(status.success()),
    }
}

fn tar_header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar_header(tar::EntryType::Regular, 0o644, 0);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, name, data)
}

/// The layer of what the sandbox adds to the root before the first step
/// (as `run_stage` prepares it): `/src` (the context), `/out`, `/tmp`,
/// `/root`. Returns its diff id.
fn write_top_layer(spec: &StageSpec, path: &Path) -> Result<String, SandboxError> {
    let sde = spec.source_date_epoch;
    let entries = match &spec.context {
        Some(dir) => {
            super::unpack::walk_context(dir).map_err(|e| super::context_error(spec, dir, e))?
        }
        None => Vec::new(),
    };
    let write = || -> io::Result<String> {
        let f = File::create(path)?;
        let mut b = tar::Builder::new(crate::digest::HashWriter::new(BufWriter::new(f)));
        for (dir, mode) in [
            ("src", 0o755),
            ("out", 0o755),
            ("tmp", 0o1777),
            ("root", 0o700),
        ] {
            let mut h = tar_header(tar::EntryType::Directory, mode, sde);
            b.append_data(&mut h, format!("{dir}/"), io::empty())?;
        }
        for e in &entries {
            match e {
                CtxEntry::Dir { rel, mode } => {
                    let mut h = tar_header(tar::EntryType::Directory, *mode, sde);
                    b.append_data(&mut h, format!("src/{rel}/"), io::empty())?;
                }
                CtxEntry::File { rel, mode, path } => {
                    let mut f = File::open(path)?;
                    let mut h = tar_header(tar::EntryType::Regular, *mode, sde);
                    h.set_size(f.metadata()?.len());
                    b.append_data(&mut h, format!("src/{rel}"), &mut f)?;
                }
                CtxEntry::Symlink { rel, target } => {
                    let mut h = tar_header(tar::EntryType::Symlink, 0o777, sde);
                    b.append_link(&mut h, format!("src/{rel}"), target)?;
                }
            }
        }
        let hw = b.into_inner()?;
        let (mut w, hex, _) = hw.finish();
        w.flush()?;
        Ok(format!("sha256:{hex}"))
    };
    write().map_err(super::io_error("writing the build root's top layer", path))
}

// ---------------------------------------------------------------- build

/// The Dockerfile of a stage: its base image, then one `RUN` per step.
fn generate_dockerfile(image: &str, steps: &[Step]) -> String {
    let mut d = format!("FROM {image} AS {STAGE}\n");
    for s in steps {
        let argv = serde_json::to_string(&s.argv()).expect("strings serialize");
        d.push_str(&format!(
            "RUN --mount=type=bind,from={image},source=/src,target=/src --mount=type=tmpfs,target=/tmp {argv}\n"
        ));
    }
    d
}

/// One value of a CSV option (`-o type=local,dest=...`), quoted if needed.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

struct Outcome {
    ok: bool,
    timed_out: bool,
}

/// Build `ctx` with its root exported to `dest`; progress to `log`.
fn build(
    client: &Client,
    ctx: &Path,
    dest: &Path,
    log: &Path,
    limit: Duration,
) -> io::Result<Outcome> {
    let mut c = client.cmd();
    if client.buildx {
        c.args(["buildx", "build"]);
    } else {
        c.arg("build").env("DOCKER_BUILDKIT", "1");
    }
    c.args(["--no-cache", "--network", "none", "--progress", "plain"])
        // Honoured by BuildKit's Dockerfile frontend from 1.3 on.
        .args(["--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=imgforge-build"])
        .arg("-o")
        .arg(format!(
            "type=local,{}",
            csv_field(&format!("dest={}", dest.display()))
        ))
        .arg("-f")
        .arg(ctx.join("Dockerfile"))
        .arg(ctx);
    let out = File::create(log)?;
    let child = c.stdout(out.try_clone()?).stderr(out).spawn()?;
    wait_until(child, limit)
}

fn wait_until(mut child: Child, limit: Duration) -> io::Result<Outcome> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Outcome {
                ok: status.success(),
                timed_out: false,
            });
        }
        if start.elapsed() > limit {
            // The client going away cancels the build on the engine.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome {
                ok: false,
                timed_out: true,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- failures

/// What the plain progress output says about one vertex.
#[derive(Debug, Default, PartialEq, Eq)]
struct Vertex {
    /// 1-based step number, for the stage's `RUN` vertices.
    step: Option<usize>,
    /// Its output, without BuildKit's line prefixes.
    lines: Vec<String>,
    error: Option<String>,
    done: bool,
}

/// The vertices of a plain progress log, by number.
fn parse_progress(text: &str) -> BTreeMap<u64, Vertex> {
    let mut out: BTreeMap<u64, Vertex> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let (id, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let Ok(id) = id.parse::<u64>() else {
            continue;
        };
        let v = out.entry(id).or_default();
        if let Some(name) = rest.strip_prefix(&format!("[{STAGE} ")) {
            let k = name.split('/').next().and_then(|k| k.parse::<usize>().ok());
            // `[imgforge-stage 1/N]` is the FROM; step n is vertex n+1.
            v.step = k
                .filter(|k| *k >= 2 && name.contains("] RUN "))
                .map(|k| k - 1);
        } else if let Some(e) = rest.strip_prefix("ERROR: ") {
            v.error = Some(e.to_string());
        } else if rest.starts_with("DONE ") || rest == "CACHED" {
            v.done = true;
        } else {
            let (t, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if !t.is_empty() && t.parse::<f64>().is_ok() {
                v.lines.push(text.to_string());
            }
        }
    }
    out
}

/// The exit code in a BuildKit error ("...: exit code: 3").
fn exit_code(error: &str) -> Option<i32> {
    let (_, code) = error.rsplit_once("exit code: ")?;
    code.trim().parse().ok()
}

/// The error for a failed build: the failing step's, with its output kept
/// as its log, or the whole build's when no step failed.
fn step_error(
    spec: &StageSpec,
    opts: &SandboxOptions,
    key: &str,
    log: &Path,
    timed_out: bool,
) -> SandboxError {
    let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    let vertices = parse_progress(&text);
    let failing = vertices.values().find(|v| {
        v.step.is_some()
            && if timed_out {
                !v.done && v.error.is_none()
            } else {
                v.error.as_deref().and_then(exit_code).is_some()
            }
    });
    let Some(v) = failing else {
        let kept = keep_log(opts, spec, key, "build", text.as_bytes()).unwrap_or(log.to_path_buf());
        return failed(
            spec,
            "the BuildKit build",
            format!(
                "{}\n(full log: {})",
                super::tail(&kept, super::TAIL_LINES),
                kept.display()
            ),
            "see the log: the engine could not run the stage (BuildKit needs the engine's image store; no registry is contacted)",
        );
    };
    let n = v.step.expect("a step vertex");
    let step = &spec.steps[n - 1];
    let mut body = v.lines.join("\n");
    body.push('\n');
    if let Some(e) = &v.error {
        body.push_str(&format!("(BuildKit: {e})\n"));
    }
    let kept = keep_log(opts, spec, key, &format!("step-{n}"), body.as_bytes())
        .unwrap_or(log.to_path_buf());
    let tail = super::tail(&kept, super::TAIL_LINES);
    if timed_out {
        return SandboxError::StepLimit {
            recipe: spec.recipe.clone(),
            step: n,
            text: step.to_string(),
            what: super::LimitHit::Time(spec.limits.timeout.as_secs()),
            tail,
            log: kept,
        };
    }
    SandboxError::StepFailed {
        recipe: spec.recipe.clone(),
        step: n,
        text: step.to_string(),
        code: v.error.as_deref().and_then(exit_code).unwrap_or(1),
        tail,
        log: kept,
    }
}

/// Keep a log where the local sandbox keeps a failed step's.
fn keep_log(
    opts: &SandboxOptions,
    spec: &StageSpec,
    key: &str,
    what: &str,
    body: &[u8],
) -> io::Result<PathBuf> {
    let dir = opts.logs.clone().unwrap_or_else(|| opts.work_dir.clone());
    std::fs::create_dir_all(&dir)?;
    let p = dir.join(format!(
        "{}-{}-{what}.log",
        super::slug(&spec.recipe),
        &key[..12]
    ));
    std::fs::write(&p, body)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_runs_each_step_in_exec_form_without_expansion() {
        let steps = vec![
            Step::Shell("echo \"$HOME\" > /out/x\ntrue".into()),
            Step::Exec(vec!["/out/hello".into(), "a b".into()]),
        ];
        let d = generate_dockerfile("imgforge-stage:abc-1", &steps);
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 3, "{d}");
        assert_eq!(lines[0], "FROM imgforge-stage:abc-1 AS imgforge-stage");
        let mounts = "RUN --mount=type=bind,from=imgforge-stage:abc-1,source=/src,target=/src --mount=type=tmpfs,target=/tmp ";
        assert_eq!(
            lines[1],
            format!("{mounts}[\"/bin/sh\",\"-c\",\"echo \\\"$HOME\\\" > /out/x\\ntrue\"]")
        );
        assert_eq!(lines[2], format!("{mounts}[\"/out/hello\",\"a b\"]"));
    }

    #[test]
    fn plain_progress_gives_each_step_its_output_and_exit_code() {
        // Docker 20.10's embedded BuildKit, and buildx's wording of the error.
        let log = "#4 FROM docker.io/library/imgforge-stage:x\n#4 DONE 0.0s\n\n\
            #5 [imgforge-stage 2/3] RUN --mount=type=bind [\"/bin/sh\",\"-c\",\"make\"]\n\
            #5 sha256:67c3\n#5 0.153 compiling\n#5 0.155 \n#5 DONE 0.2s\n\n\
            #6 [imgforge-stage 3/3] RUN --mount=type=bind [\"/out/hello\"]\n\
            #6 0.133 boom: it failed\n\
            #6 ERROR: executor failed running [/out/hello]: exit code: 3\n------\n > [imgforge-stage 3/3] RUN:\n------\n\
            #9 [imgforge-stage 2/2] RUN [\"x\"]\n\
            #9 ERROR: process \"x\" did not complete successfully: exit code: 127\n";
        let v = parse_progress(log);
        assert_eq!(v[&4].step, None);
        assert_eq!(v[&5].step, Some(1));
        assert_eq!(v[&5].lines, vec!["compiling".to_string(), String::new()]);
        assert!(v[&5].done && v[&5].error.is_none());
        assert_eq!(v[&6].step, Some(2));
        assert_eq!(v[&6].lines, vec!["boom: it failed".to_string()]);
        assert_eq!(v[&6].error.as_deref().and_then(exit_code), Some(3));
        assert_eq!(v[&9].error.as_deref().and_then(exit_code), Some(127));
    }

    #[test]
    fn an_output_path_with_a_comma_is_quoted() {
        assert_eq!(csv_field("dest=/a/b"), "dest=/a/b");
        assert_eq!(csv_field("dest=/a,b\"c"), "\"dest=/a,b\"\"c\"");
    }

    #[test]
    fn executor_flags_parse_back() {
        use crate::options::Executor;
        for e in [
            Executor::Runc,
            Executor::Buildkit { host: None },
            Executor::Buildkit {
                host: Some("ssh://me@builder".into()),
            },
        ] {
            assert_eq!(Executor::parse(&e.flag()), Ok(e));
        }
        assert!(Executor::parse("buildkit=").is_err());
        assert!(Executor::parse("docker").is_err());
    }
}
