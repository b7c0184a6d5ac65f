//! Build stages: a hermetic build sandbox; only declared artifacts ship.
//!
//! [`run_stage`] turns a [`StageSpec`] into [`Artifact`]s:
//!
//! 1. **Key.** A cache key is computed first (see [`cache_key`]): sha256 over
//!    the imgforge version, the layer digests in order, a digest of the
//!    context tree, the steps, the env, the artifact patterns and
//!    `SOURCE_DATE_EPOCH`. With a cache and a complete, verified result under
//!    `cache_dir/<key>/`, that result is returned (`cached: true`) and
//!    nothing runs.
//! 2. **Build root.** A fresh temporary directory under `work_dir` gets the
//!    layers, bottom first, then the context at `/src`, plus `/out` (0755),
//!    `/tmp` (1777) and `/root` (0700). All writes are resolved beneath the
//!    root component by component with `O_NOFOLLOW` (module `beneath`), never
//!    through a symlink: a hostile layer or context cannot touch the host.
//! 3. **Steps.** Each step runs in an OCI runtime (crun if on `PATH`, else
//!    runc; or [`SandboxOptions::runtime`]) with the spec described in
//!    module `runtime`: no network but loopback, new pid/ipc/uts/mount/cgroup
//!    namespaces, hostname `imgforge-build`, a fixed env, cwd `/src`
//!    (read-only), `/tmp` a tmpfs. Output goes to a log file per step; the
//!    first failing step stops the stage with [`SandboxError::StepFailed`]
//!    naming the recipe, the step, its exit code and the last lines of its
//!    output (the full log is kept in `work_dir`).
//! 4. **Artifacts.** Declared paths and globs are resolved beneath the root
//!    without following symlinks and copied into the store (`cache_dir`, or
//!    `work_dir/artifacts` without a cache) in a temporary directory renamed
//!    into place (module `store`). The build root is then deleted.
//!
//! [`artifact_entries`] maps the recipe's `[[copy]]` rules onto layer
//! entries for the runtime image.
//!
//! # What the sandbox needs from the host
//!
//! * root, or else user namespaces: run by another user, the step's spec
//!   becomes rootless (module `runtime`: the caller mapped to root, the
//!   user's subordinate id range from `/etc/subuid` and `/etc/subgid` to
//!   ids 1..=65536 through `newuidmap`/`newgidmap` (module `userns`), no
//!   cgroup limits, the memory limit as `RLIMIT_AS`);
//! * `runc` (Debian: `apt-get install runc`) or `crun`. Verified here with
//!   runc 1.1.5 (Debian 12) on Linux 6.18 in a Firecracker VM (a real kernel,
//!   not gVisor) with a hybrid cgroup v1/v2 hierarchy: the default `runc spec` container runs unmodified (no
//!   `--no-pivot`, no seccomp or cgroup tweaks needed), and the new network
//!   namespace comes up with `lo` only. On another host, if a step fails
//!   with a runtime error (`runc run failed: ...` in the log tail), run
//!   `runc spec && runc run --bundle . t` by hand next to a `rootfs/` to see
//!   what the host lacks (namespaces, cgroups, mount permissions).
//! * a filesystem for `work_dir` that supports symlinks, hard links, FIFOs
//!   and `chown` (any local Linux filesystem).
//!
//! The sandbox keeps to a small interface ([`run_stage`] in,
//! [`StageOutput`] out), so another executor sits beside the local OCI
//! runtime: [`SandboxOptions::executor`] set to BuildKit runs steps 2 and 3
//! on a BuildKit instead (module [`buildkit`]); the key, the cache and
//! step 4 stay as they are.

mod beneath;
pub mod binfmt;
pub mod buildkit;
pub mod overlay;
mod runtime;
mod seccomp;
mod store;
mod unpack;
mod userns;

pub use userns::{RootlessError, container_owner};

use crate::layer::{Content, Entry, Kind};
use crate::recipe::{Copy, Step};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Lines of output quoted in a step failure.
const TAIL_LINES: usize = 20;

/// Everything a build stage needs; the inputs of its cache key.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Recipe (image) name, for messages.
    pub recipe: String,
    /// Compressed layer blobs, bottom first; file names are hex digests.
    pub layers: Vec<PathBuf>,
    /// The context directory, copied to `/src` (read-only in the sandbox).
    pub context: Option<PathBuf>,
    pub steps: Vec<Step>,
    /// Recipe build env, added to the fixed env.
    pub env: BTreeMap<String, String>,
    /// Absolute paths or globs in the build root, e.g. `/out/*.so`.
    pub artifacts: Vec<String>,
    pub source_date_epoch: u64,
    /// Time and memory limits of each step (not part of the cache key: they
    /// decide whether a step may finish, not what it produces).
    pub limits: crate::limits::StepLimits,
}

/// Where the sandbox works.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Content-addressed artifact cache; `None` = no reuse.
    pub cache_dir: Option<PathBuf>,
    /// Parent for temporary build roots (and, without a cache, results).
    pub work_dir: PathBuf,
    /// The OCI runtime; default: `crun` if on `PATH`, else `runc`.
    pub runtime: Option<PathBuf>,
    /// Where the full log of a failed step is kept (default: `work_dir`);
    /// it must outlive the build.
    pub logs: Option<PathBuf>,
    /// Layer trees shared with other roots of the build: the root is an
    /// overlay of them where mounting is allowed (module [`overlay`]).
    /// `None`: the layers are unpacked into the root.
    pub trees: Option<std::sync::Arc<overlay::Trees>>,
    /// What runs the steps: the OCI runtime here, or a BuildKit.
    pub executor: crate::options::Executor,
}

/// One artifact of a finished stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path in the build root without a leading `/`, e.g. `out/hello`.
    pub path: String,
    /// `File`, `Dir` or `Symlink`.
    pub kind: Kind,
    /// Permission bits as the build left them (incl. setuid/sticky).
    pub mode: u32,
    /// The content (in the store) for files.
    pub file: Option<PathBuf>,
    /// Hex sha256 of the content, for files.
    pub sha256: Option<String>,
    pub size: u64,
}

/// The result of [`run_stage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOutput {
    /// Sorted by path.
    pub artifacts: Vec<Artifact>,
    /// True when reused from the cache without running anything.
    pub cached: bool,
    /// Hex sha256 of the stage's inputs.
    pub cache_key: String,
}

/// What went wrong in a build stage. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "{recipe}: no OCI runtime found{detail}\nhelp: install one (`apt-get install runc`, or crun), or point the runtime option at its binary"
    )]
    RuntimeMissing { recipe: String, detail: String },
    #[error(
        "{recipe}: cannot unpack layer {}: entry {entry:?}: {reason}\nhelp: the layer is corrupt or hostile (nothing was written outside the build root); rebuild it, or drop the package or image it came from",
        layer.display()
    )]
    Unpack {
        recipe: String,
        layer: PathBuf,
        entry: String,
        reason: String,
    },
    #[error(
        "{recipe}: cannot use the build context {}: {entry:?}: {reason}\nhelp: the context may hold only files, directories and symlinks, with UTF-8 names",
        context.display()
    )]
    Context {
        recipe: String,
        context: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{recipe}: {reason}\nhelp: {help}")]
    Invalid {
        recipe: String,
        reason: String,
        help: String,
    },
    #[error(
        "{recipe}: build step {step} failed with exit code {code}: {text}\n--- last lines of its output (full log: {}) ---\n{tail}\n---\nhelp: fix the step in the recipe; it runs with cwd /src (read-only), no network, and writes results to /out{}",
        log.display(),
        runtime_hint(tail)
    )]
    StepFailed {
        recipe: String,
        /// 1-based step number.
        step: usize,
        /// The step as written in the recipe.
        text: String,
        code: i32,
        /// The last lines of its output.
        tail: String,
        /// The full log, kept after the build root is removed.
        log: PathBuf,
    },
    #[error(
        "{recipe}: build step {step} {what}: {text}\n--- last lines of its output (full log: {}) ---\n{tail}\n---\nhelp: raise `timeout` or `memory` in the recipe's [build] section if the step needs more (defaults: 30m, 4G)",
        log.display()
    )]
    StepLimit {
        recipe: String,
        step: usize,
        text: String,
        what: LimitHit,
        tail: String,
        log: PathBuf,
    },
    #[error(
        "{recipe}: cannot start build step {step} ({text}) with {}: {source}\nhelp: check that the runtime runs at all: `runc spec && runc run --bundle . t` in a directory with a rootfs/",
        runtime.display()
    )]
    Spawn {
        recipe: String,
        step: usize,
        text: String,
        runtime: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{recipe}: artifact {artifact:?} was not produced by the build\nhelp: make a step write it (e.g. into /out), or fix the path in `artifacts`"
    )]
    MissingArtifact { recipe: String, artifact: String },
    #[error(
        "{recipe}: artifact {artifact:?} rejected: {reason}\nhelp: artifacts must be regular files, directories or symlinks reached without going through a symlink"
    )]
    BadArtifact {
        recipe: String,
        artifact: String,
        reason: String,
    },
    #[error(
        "copy from {from:?} matches no build artifact (artifacts: {available})\nhelp: `from` must name one of the build stage's artifacts (or a glob matching some)"
    )]
    CopyNoMatch { from: String, available: String },
    #[error("copy {from:?} -> {to:?}: {reason}\nhelp: {help}")]
    BadCopy {
        from: String,
        to: String,
        reason: String,
        help: String,
    },
    #[error("{recipe}: cannot run a sandbox rootless: {source}")]
    Rootless {
        recipe: String,
        #[source]
        source: RootlessError,
    },
    #[error(transparent)]
    Buildkit(#[from] buildkit::BuildkitError),
    #[error("{what} {}: {source}\nhelp: check free space and permissions there", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(what: &str, path: &Path) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.to_string();
    let path = path.to_path_buf();
    move |source| SandboxError::Io { what, path, source }
}

/// The digest of a layer blob: its file name when that is a sha256 hex
/// digest (as written by `layer::write_layer`), else the hash of its bytes.
fn layer_digest(p: &Path) -> Result<String, SandboxError> {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_prefix("sha256:").unwrap_or(name);
    if crate::digest::is_sha256_hex(name) {
        return Ok(name.to_string());
    }
    let (hex, _) = crate::digest::sha256_file(p).map_err(io_error("reading layer", p))?;
    Ok(hex)
}

/// The cache key of a stage: hex sha256 over canonical JSON of every input.
pub fn cache_key(spec: &StageSpec) -> Result<String, SandboxError> {
    let layers = spec
        .layers
        .iter()
        .map(|l| layer_digest(l))
        .collect::<Result<Vec<_>, _>>()?;
    let context = match &spec.context {
        Some(dir) => Some(unpack::context_digest(dir).map_err(|e| context_error(spec, dir, e))?),
        None => None,
    };
    let steps: Vec<Vec<String>> = spec.steps.iter().map(|s| s.argv()).collect();
    let doc = serde_json::json!({
        "kind": "imgforge-build-stage",
        "format": 1,
        "imgforge": env!("CARGO_PKG_VERSION"),
        "layers": layers,
        "context": context,
        "steps": steps,
        "env": spec.env,
        "artifacts": spec.artifacts,
        "source_date_epoch": spec.source_date_epoch,
    });
    Ok(hex::encode(Sha256::digest(crate::json::to_canonical(&doc))))
}

fn context_error(spec: &StageSpec, dir: &Path, e: unpack::UnpackError) -> SandboxError {
    SandboxError::Context {
        recipe: spec.recipe.clone(),
        context: dir.to_path_buf(),
        entry: e.entry,
        reason: e.reason.to_string(),
    }
}

fn validate(spec: &StageSpec) -> Result<(), SandboxError> {
    let invalid = |reason: String, help: &str| SandboxError::Invalid {
        recipe: spec.recipe.clone(),
        reason,
        help: help.to_string(),
    };
    for (i, s) in spec.steps.iter().enumerate() {
        if s.argv().is_empty() || s.argv()[0].is_empty() {
            return Err(invalid(
                format!("build step {} is empty", i + 1),
                "a step is a shell string or a non-empty argv array",
            ));
        }
    }
    for k in spec.env.keys() {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(invalid(
                format!("build env name {k:?} is invalid"),
                "env names are non-empty and contain no '=' or NUL",
            ));
        }
    }
    for a in &spec.artifacts {
        if !a.starts_with('/') || beneath::components(a).map(|c| c.is_empty()).unwrap_or(true) {
            return Err(invalid(
                format!("artifact {a:?} must be an absolute path below / without '..'"),
                "write artifacts as build-root paths, e.g. \"/out/hello\" or \"/out/*.so\"",
            ));
        }
    }
    if spec.artifacts.is_empty() {
        return Err(invalid(
            "the build stage declares no artifacts".into(),
            "list what the stage produces, e.g. artifacts = [\"/out/hello\"]",
        ));
    }
    Ok(())
}

fn find_runtime(spec: &StageSpec, opts: &SandboxOptions) -> Result<PathBuf, SandboxError> {
    match &opts.runtime {
        Some(p) if runtime::usable(p) => Ok(p.clone()),
        Some(p) => Err(SandboxError::RuntimeMissing {
            recipe: spec.recipe.clone(),
            detail: format!(": {} does not exist or is not executable", p.display()),
        }),
        None => runtime::find().ok_or_else(|| SandboxError::RuntimeMissing {
            recipe: spec.recipe.clone(),
            detail: " (looked for crun and runc on PATH and in /usr/local/sbin, /usr/sbin, /sbin)"
                .into(),
        }),
    }
}

/// The last `n` lines of a log file, each cut to 400 bytes.
fn tail(log: &Path, n: usize) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| {
            if l.len() > 400 {
                let mut end = 400;
                while !l.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}...", &l[..end])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Extra advice when the tail shows the OCI runtime itself failed (e.g. the
/// program does not exist in the build root).
fn runtime_hint(tail: &str) -> &'static str {
    let runtime_failed = tail.contains("runc run failed")
        || tail.contains("level=error")
        || tail.lines().any(|l| l.starts_with("crun: "));
    if runtime_failed {
        ".\nThe OCI runtime itself reported an error: check that the program exists in the build root (the stage's layers provide it; `cc` needs an alternatives link, call `gcc-12`) and that the runtime works on this host"
    } else {
        ""
    }
}

/// A file-name-safe version of a recipe name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Not root: the subordinate id range and the helpers that map it must be
/// there (module `userns`), else an error saying how to add them.
fn rootless_ready(recipe: &str) -> Result<(), SandboxError> {
    userns::current()
        .as_ref()
        .map(|_| ())
        .map_err(|e| SandboxError::Rootless {
            recipe: recipe.to_string(),
            source: e.clone(),
        })
}

/// Run a build stage (or reuse its cached result).
pub fn run_stage(spec: &StageSpec, opts: &SandboxOptions) -> Result<StageOutput, SandboxError> {
    validate(spec)?;
    let key = cache_key(spec)?;
    if let Some(cache) = &opts.cache_dir
        && let Some(artifacts) = store::load(&cache.join(&key), &key)
    {
        return Ok(StageOutput {
            artifacts,
            cached: true,
            cache_key: key,
        });
    }
    if let crate::options::Executor::Buildkit { host } = &opts.executor {
        return buildkit::run_stage(spec, opts, &key, host.as_deref());
    }
    let runtime = find_runtime(spec, opts)?;
    rootless_ready(&spec.recipe)?;

    std::fs::create_dir_all(&opts.work_dir).map_err(io_error("creating", &opts.work_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix("imgforge-stage-")
        .tempdir_in(&opts.work_dir)
        .map_err(io_error("creating a build directory in", &opts.work_dir))?;
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(io_error("creating", &rootfs))?;
    let mounted = mount_root(spec, opts, tmp.path())?;
    let root = beneath::Root::open(&rootfs).map_err(io_error("opening", &rootfs))?;
    rustix::fs::fchmod(root.fd(), rustix::fs::Mode::from(0o755))
        .map_err(|e| io_error("chmod", &rootfs)(e.into()))?;
    if mounted.is_none() {
        for layer in &spec.layers {
            unpack::unpack_layer(&root, layer).map_err(|e| SandboxError::Unpack {
                recipe: spec.recipe.clone(),
                layer: layer.clone(),
                entry: e.entry,
                reason: e.reason.to_string(),
            })?;
        }
    }
    let prepare = |path: &str, mode: u32| -> Result<(), SandboxError> {
        let mut w = beneath::Writer::new(&root);
        let meta = beneath::Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: spec.source_date_epoch,
        };
        w.dir(path, &meta).map_err(|r| SandboxError::Unpack {
            recipe: spec.recipe.clone(),
            layer: PathBuf::from("(build root setup)"),
            entry: path.to_string(),
            reason: format!("cannot create /{path}: {r}"),
        })
    };
    prepare("src", 0o755)?;
    prepare("out", 0o755)?;
    prepare("tmp", 0o1777)?;
    prepare("root", 0o700)?;
    if let Some(ctx) = &spec.context {
        unpack::copy_context(&root, ctx, "src", spec.source_date_epoch)
            .map_err(|e| context_error(spec, ctx, e))?;
    }

    let env = runtime::environment(spec.source_date_epoch, &spec.env);
    let unique = tmp
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("stage")
        .trim_start_matches("imgforge-stage-")
        .to_string();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).map_err(io_error("creating", &logs))?;
    for (i, step) in spec.steps.iter().enumerate() {
        let n = i + 1;
        // `/src` is bind-mounted from `<root>/src` by host path: make sure no
        // earlier step replaced it (e.g. by a symlink to a host directory).
        if !matches!(root.lstat("src"), Ok((beneath::Found::Dir, _))) {
            return Err(SandboxError::Invalid {
                recipe: spec.recipe.clone(),
                reason: format!("before build step {n} ({step}): /src is no longer a directory"),
                help: "steps must not replace /src; write results to /out".into(),
            });
        }
        let config = runtime::spec(root.path(), &step.argv(), &env, &spec.limits);
        let log = logs.join(format!("step-{n}.log"));
        let id = format!("imgforge-{}-{unique}-{n}", std::process::id());
        let outcome = runtime::run(
            &runtime,
            &tmp.path().join("bundle"),
            &tmp.path().join("state"),
            &id,
            &config,
            &log,
            spec.limits.timeout,
        )
        .map_err(|source| SandboxError::Spawn {
            recipe: spec.recipe.clone(),
            step: n,
            text: step.to_string(),
            runtime: runtime.clone(),
            source,
        })?;
        if outcome.code != 0 || outcome.timed_out {
            return Err(step_failed(spec, opts, &key, n, step, &outcome, &log));
        }
    }

    let store_dir = opts
        .cache_dir
        .clone()
        .unwrap_or_else(|| opts.work_dir.join("artifacts"));
    let artifacts = store::save(&spec.recipe, &root, &spec.artifacts, &store_dir, &key)?;
    drop(root);
    drop(mounted);
    // Removal errors (e.g. a build left an immutable file) must not hide
    // the result; the directory is under work_dir for the caller to clean.
    let _ = tmp.close();
    Ok(StageOutput {
        artifacts,
        cached: false,
        cache_key: key,
    })
}

/// Which per-step limit stopped a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The time limit, in seconds.
    Time(u64),
    /// Killed by SIGKILL with this memory limit (MiB) in force.
    Memory(u64),
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Time(s) => {
                write!(f, "ran longer than its time limit of {s}s and was killed")
            }
            LimitHit::Memory(m) => write!(
                f,
                "was killed (SIGKILL), most likely by the memory limit of {m} MiB"
            ),
        }
    }
}

/// The error for a failed step, after keeping its full log where the error
/// says (outside the build root, which is deleted).
fn step_failed(
    spec: &StageSpec,
    opts: &SandboxOptions,
    key: &str,
    n: usize,
    step: &Step,
    outcome: &runtime::Outcome,
    log: &Path,
) -> SandboxError {
    let dir = opts.logs.clone().unwrap_or_else(|| opts.work_dir.clone());
    let kept = dir.join(format!(
        "{}-{}-step-{n}.log",
        slug(&spec.recipe),
        &key[..12]
    ));
    let log_path = match std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(log, &kept)) {
        Ok(_) => kept,
        Err(_) => log.to_path_buf(),
    };
    let tail = tail(log, TAIL_LINES);
    let limit = if outcome.timed_out {
        Some(LimitHit::Time(spec.limits.timeout.as_secs()))
    } else if outcome.code == 137 {
        Some(LimitHit::Memory(spec.limits.memory_bytes >> 20))
    } else {
        None
    };
    match limit {
        Some(what) => SandboxError::StepLimit {
            recipe: spec.recipe.clone(),
            step: n,
            text: step.to_string(),
            what,
            tail,
            log: log_path,
        },
        None => SandboxError::StepFailed {
            recipe: spec.recipe.clone(),
            step: n,
            text: step.to_string(),
            code: outcome.code,
            tail,
            log: log_path,
        },
    }
}

/// Strip a leading `/` from a path in the build root.
fn rel(p: &str) -> &str {
    p.trim_start_matches('/')
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Map `[[copy]]` rules onto layer entries for the runtime image.
///
/// * `from` names an artifact (exact path) or is a glob over artifact paths
///   (`*`, `?`, `[...]` within one component);
/// * `to` ending in `/` is a directory: each matched file or symlink lands
///   at `to/<basename>`; otherwise `to` is the destination path itself, and
///   `from` must match exactly one artifact;
/// * a matched directory brings its whole subtree, and (as with Docker's
///   `COPY`) its *contents* go under `to`, with or without the trailing `/`:
///   `from = "/out/lib", to = "/usr/lib/app/"` gives `/usr/lib/app/a.so`;
/// * owner from the copy (default 0:0); `mode` from the copy applies to
///   regular files, directories keep the artifact's mode, symlinks 0777;
///   mtime is `source_date_epoch`; file content is the stored artifact.
///
/// Parent directories of the destinations are not added here:
/// [`crate::layer::normalize`] adds the missing ones.
pub fn artifact_entries(
    out: &StageOutput,
    copies: &[Copy],
    source_date_epoch: u64,
) -> Result<Vec<Entry>, SandboxError> {
    let mut entries = Vec::new();
    for c in copies {
        let bad = |reason: String, help: &str| SandboxError::BadCopy {
            from: c.from.clone(),
            to: c.to.clone(),
            reason,
            help: help.to_string(),
        };
        let from = rel(&c.from);
        let matched: Vec<&Artifact> = if store_has_glob(from) {
            let pat = glob::Pattern::new(from)
                .map_err(|e| bad(format!("invalid glob: {e}"), "fix the pattern"))?;
            let opts = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: true,
            };
            out.artifacts
                .iter()
                .filter(|a| pat.matches_with(&a.path, opts))
                .collect()
        } else {
            out.artifacts.iter().filter(|a| a.path == from).collect()
        };
        if matched.is_empty() {
            let available = out
                .artifacts
                .iter()
                .map(|a| format!("/{}", a.path))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SandboxError::CopyNoMatch {
                from: c.from.clone(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available
                },
            });
        }
        let to_dir = c.to.ends_with('/');
        if matched.len() > 1 && !to_dir {
            return Err(bad(
                format!("{} artifacts match, but `to` is a file path", matched.len()),
                "end `to` with '/' to copy them into a directory",
            ));
        }
        let to = rel(&c.to).trim_end_matches('/');
        for m in matched {
            let base = if to_dir && m.kind != Kind::Dir {
                if to.is_empty() {
                    basename(&m.path).to_string()
                } else {
                    format!("{to}/{}", basename(&m.path))
                }
            } else {
                to.to_string()
            };
            let prefix = format!("{}/", m.path);
            let subtree = std::iter::once(m)
                .chain(out.artifacts.iter().filter(|a| a.path.starts_with(&prefix)));
            for a in subtree {
                if a.path == m.path && base.is_empty() {
                    continue; // a directory copied to `/`: only its contents
                }
                let dest = if a.path == m.path {
                    base.clone()
                } else {
                    format!("{base}/{}", &a.path[prefix.len()..])
                };
                let dest = crate::layer::normalize_path(&dest).map_err(|r| {
                    bad(
                        format!("destination {dest:?}: {r}"),
                        "write `to` as an absolute image path without '..'",
                    )
                })?;
                entries.push(entry_for(a, &dest, c, source_date_epoch)?);
            }
        }
    }
    Ok(entries)
}

fn store_has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn entry_for(a: &Artifact, dest: &str, c: &Copy, sde: u64) -> Result<Entry, SandboxError> {
    let name = |id: u64| {
        if id == 0 {
            "root".to_string()
        } else {
            String::new()
        }
    };
    let (kind, mode, size, content, sha) = match &a.kind {
        Kind::File => {
            let file = a.file.clone().ok_or_else(|| SandboxError::BadCopy {
                from: c.from.clone(),
                to: c.to.clone(),
                reason: format!("artifact /{} has no stored content", a.path),
                help: "run the build stage again (the cache entry is incomplete)".into(),
            })?;
            let sha = a
                .sha256
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|v| <[u8; 32]>::try_from(v).ok());
            (
                Kind::File,
                c.mode.unwrap_or(a.mode) & 0o7777,
                a.size,
                Content::Path(file),
                sha,
            )
        }
        Kind::Dir => (Kind::Dir, a.mode & 0o7777, 0, Content::None, None),
        Kind::Symlink(t) => (Kind::Symlink(t.clone()), 0o777, 0, Content::None, None),
        Kind::Hardlink(_) => {
            return Err(SandboxError::BadCopy {
                from: c.from.clone(),
                to: c.to.clone(),
                reason: format!("artifact /{} is a hard link", a.path),
                help: "artifacts are files, directories or symlinks".into(),
            });
        }
    };
    Ok(Entry {
        path: dest.to_string(),
        kind,
        mode,
        uid: c.owner.uid,
        gid: c.owner.gid,
        uname: name(c.owner.uid),
        gname: name(c.owner.gid),
        mtime: sde,
        size,
        content,
        sha256: sha,
        origin: format!("build artifact /{}", a.path),
    })
}

/// Mount the stage's layers (shared trees) at `<tmp>/rootfs`, or `None`
/// when there are no trees or mounting is not allowed here.
fn mount_root(
    spec: &StageSpec,
    opts: &SandboxOptions,
    tmp: &Path,
) -> Result<Option<overlay::Overlay>, SandboxError> {
    let Some(trees) = &opts.trees else {
        return Ok(None);
    };
    let lower = trees.trees(&spec.recipe, &spec.layers)?;
    let dirs: Vec<&Path> = lower.iter().map(|t| t.dir.as_path()).collect();
    let rootfs = tmp.join("rootfs");
    Ok(overlay::mount(&dirs, &tmp.join("upper"), &tmp.join("ovl"), &rootfs).ok())
}

/// Unpack `layers` (bottom first) beneath `rootfs` with the same checks as
/// a build root (no write through a symlink, no `..`, no devices); returns
/// every path written (relative, no leading `/`). Used by the configure
/// step to assemble an image root.
pub fn unpack_layers(
    label: &str,
    rootfs: &Path,
    layers: &[PathBuf],
) -> Result<std::collections::BTreeSet<String>, SandboxError> {
    std::fs::create_dir_all(rootfs).map_err(io_error("creating", rootfs))?;
    let root = beneath::Root::open(rootfs).map_err(io_error("opening", rootfs))?;
    let mut paths = std::collections::BTreeSet::new();
    for layer in layers {
        unpack::unpack_layer_into(&root, layer, &mut paths).map_err(|e| SandboxError::Unpack {
            recipe: label.to_string(),
            layer: layer.clone(),
            entry: e.entry,
            reason: e.reason.to_string(),
        })?;
    }
    Ok(paths)
}

/// How [`run_in_root`] runs one command in an assembled root.
pub struct InRoot<'a> {
    /// What the errors name (the image or stage).
    pub label: &'a str,
    pub argv: &'a [String],
    /// Added to the sandbox's fixed environment.
    pub env: &'a BTreeMap<String, String>,
    pub source_date_epoch: u64,
    /// Scratch for the runtime's bundle and state.
    pub work: &'a Path,
    /// The command's output is appended here.
    pub log: &'a Path,
    /// The OCI runtime; found on `PATH` when `None`.
    pub runtime: Option<&'a Path>,
    /// A host directory bound read-only at the given absolute path in the
    /// root (the configure driver reads its overlay's upper directory
    /// through it).
    pub view: Option<(&'a Path, &'a str)>,
    /// Run the command chrooted into the root, as dpkg runs maintainer
    /// scripts when a root is built with debootstrap or mmdebstrap (see
    /// `runtime::chrooted`); ignored when the root has no `chroot` binary.
    pub chroot: bool,
}

/// Run one command in an already assembled root (`rootfs`, writable) with
/// the build sandbox's isolation (no network, fixed env plus `env`, cwd
/// `/`), its output appended to `log`. Returns the exit code. The root is
/// the caller's; nothing is mounted from the host except `view`.
pub fn run_in_root(rootfs: &Path, run: &InRoot<'_>) -> Result<i32, SandboxError> {
    let label = run.label;
    let rt = match run.runtime {
        Some(p) if runtime::usable(p) => p.to_path_buf(),
        _ => runtime::find().ok_or_else(|| SandboxError::RuntimeMissing {
            recipe: label.to_string(),
            detail: " (looked for crun and runc on PATH and in /usr/local/sbin, /usr/sbin, /sbin)"
                .into(),
        })?,
    };
    rootless_ready(label)?;
    let env = runtime::environment(run.source_date_epoch, run.env);
    // Maintainer scripts get the same default limits as a build step.
    let limits = crate::limits::StepLimits::default();
    let mut config = runtime::spec(rootfs, run.argv, &env, &limits);
    // No build context here: drop the /src bind and start in /.
    config["process"]["cwd"] = serde_json::json!("/");
    if let Some(m) = config["mounts"].as_array_mut() {
        m.retain(|m| m["destination"] != "/src");
        if let Some((source, at)) = run.view {
            m.push(serde_json::json!({"destination": at, "type": "bind",
                "source": source.to_string_lossy(),
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}));
        }
    }
    if run.chroot {
        let outer = run.work.join("outer");
        runtime::chrooted(&mut config, rootfs, &outer).map_err(io_error("preparing", &outer))?;
    }
    let unique = run
        .work
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("root")
        .to_string();
    let id = format!("imgforge-{}-{}", std::process::id(), slug(&unique));
    let outcome = runtime::run(
        &rt,
        &run.work.join("bundle"),
        &run.work.join("state"),
        &id,
        &config,
        run.log,
        limits.timeout,
    )
    .map_err(|source| SandboxError::Spawn {
        recipe: label.to_string(),
        step: 1,
        text: run.argv.join(" "),
        runtime: rt.clone(),
        source,
    })?;
    Ok(outcome.code)
}
