//! The configure step: what dpkg runs after unpacking, made deterministic.
//!
//! [`configure`] takes an image root (its layers), the packages to
//! configure (those of the layer just built), every other package present
//! (base, toolset: for triggers) and a toolset layer, and returns the
//! configuration layer: exactly the paths the maintainer scripts and
//! triggers created or changed in the image root.
//!
//! 1. **Root.** A temporary directory gets the toolset layer, then the
//!    image's layers on top (the image's files win where both ship a path).
//!    Toolset paths the image does not ship are remembered and never reach
//!    the layer. The toolset (a shell, dpkg's `update-alternatives` and
//!    `dpkg-trigger`, debconf and perl-base, coreutils, sed, grep,
//!    findutils, ldconfig...) is a locked package set (`[configure] toolset`
//!    in the base recipe) that never ships, like a build stage's packages.
//! 2. **Scripts.** Each package's `preinst`, `postinst`, `config`,
//!    `templates` and `triggers` go to `var/lib/dpkg/info/` as dpkg puts
//!    them; a driver (module [`plan`]) preseeds debconf (the recipe's
//!    `[debconf]` table), runs `preinst install` then `postinst configure`
//!    in dependency order, then triggers, in the build sandbox (no
//!    network, `DEBIAN_FRONTEND=noninteractive`, `SOURCE_DATE_EPOCH`).
//! 3. **Difference.** The root is snapshotted before and after (module
//!    [`tree`]); created or changed paths become layer entries (owner and
//!    mode as the scripts left them, mtime `SOURCE_DATE_EPOCH`), sorted and
//!    normalized by [`crate::layer`]. Logs, caches and backups are dropped.
//!    A timestamp-based `.pyc` (written by an import) gets its source's
//!    mtime in the image (module [`pyc`]). A path that cannot be made
//!    deterministic (such a `.pyc` without its source, a machine id, a
//!    FIFO...) or a removed image path is an error naming the package
//!    whose script made it and the path.

pub mod jks;
pub mod plan;
pub mod pyc;
pub mod tree;

use crate::deb::ControlInfo;
use crate::layer::{self, Entry, LayerBlob};
use crate::sandbox::overlay::{self, Trees};
use sha2::Digest as _;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One package in the root.
#[derive(Debug, Clone)]
pub struct PackageRef {
    pub name: String,
    pub deb: PathBuf,
    pub control: ControlInfo,
    /// Paths it ships, named as in the package (merged-/usr not applied):
    /// its dpkg `.list` file and file-trigger matching.
    pub paths: Vec<String>,
}

impl PackageRef {
    /// The maintainer scripts and trigger files the package has, from its
    /// control data (nothing runs).
    pub fn script_files(&self) -> Vec<String> {
        let files = crate::deb::read_control_files(&self.deb, &crate::deb::Limits::default());
        let mut names: Vec<String> = files.map(|f| f.into_keys().collect()).unwrap_or_default();
        names.retain(|n| ["preinst", "postinst", "config", "triggers"].contains(&n.as_str()));
        names
    }

    /// Whether the package has a `preinst` or `postinst`.
    pub fn has_scripts(&self) -> bool {
        crate::deb::read_control_files(&self.deb, &crate::deb::Limits::default())
            .map(|f| f.contains_key("preinst") || f.contains_key("postinst"))
            .unwrap_or(true)
    }
}

/// Everything one configure run needs.
#[derive(Debug, Clone)]
pub struct ConfigureSpec {
    /// For messages: `base`, `nginx`, `hello (build stage)`.
    pub label: String,
    /// The image root's layer blobs, bottom first.
    pub layers: Vec<PathBuf>,
    /// The toolset's layer blob (unpacked below the image; its paths the
    /// image does not ship never reach the configuration layer).
    pub toolset_layer: Option<PathBuf>,
    /// The toolset's own configuration (what its packages' scripts made, as
    /// on an installed Debian system: PAM's common files, ...), between the
    /// toolset and the image. Paths the image's scripts write there ship.
    pub toolset_config: Option<PathBuf>,
    /// The packages whose scripts run, those of the newest layer.
    pub configure: Vec<PackageRef>,
    /// Every other package in the root (for trigger interests).
    pub present: Vec<PackageRef>,
    /// debconf answers: `question` -> value (e.g. `tzdata/Areas` = `Etc`).
    pub debconf: BTreeMap<String, String>,
    pub source_date_epoch: u64,
    pub arch: String,
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct ConfigureOptions {
    /// Parent of the temporary root.
    pub work_dir: PathBuf,
    /// The OCI runtime (default: crun, else runc).
    pub runtime: Option<PathBuf>,
    /// The layer's lower symlinks (`bin`, `lib`... of the base).
    pub lower_symlinks: BTreeSet<String>,
    /// Where and how the configuration layer is written.
    pub write: layer::WriteOptions,
    /// Where the full log of a failed run is kept (e.g. `<cache>/logs`);
    /// `None`: in `work_dir`, which the caller may delete.
    pub logs: Option<PathBuf>,
    /// Layer trees shared by the roots of one build: the root is an
    /// overlay of them when mounting is allowed. `None`: the layers are
    /// unpacked into the root.
    pub trees: Option<Arc<Trees>>,
}

/// The result of [`configure`].
#[derive(Debug, Clone)]
pub struct Configured {
    /// The configuration layer; `None` when the scripts changed nothing.
    pub layer: Option<LayerBlob>,
    /// `(package, path)` for every path in the layer, the package whose
    /// script (or trigger) created or last changed it.
    pub created: Vec<(String, String)>,
    /// Scripts run.
    pub scripts: usize,
}

/// What went wrong while configuring. Every message names the image and,
/// where known, the package and path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("{label}: cannot read the maintainer scripts of {package} ({}): {source}\nhelp: the .deb is damaged; fetch it again", deb.display())]
    Control {
        label: String,
        package: String,
        deb: PathBuf,
        #[source]
        source: Box<crate::deb::DebError>,
    },
    #[error(transparent)]
    Sandbox(Box<crate::sandbox::SandboxError>),
    #[error(
        "{label}: {package}: `{script}` failed with exit code {code}\n--- last lines of the configure log (full log: {}) ---\n{tail}\n---\nhelp: the script needs something the toolset lacks (add it to [configure] toolset in the base recipe), or a debconf answer (add it to the recipe's [debconf] table); `configure = false` in [image] skips configuration",
        log.display()
    )]
    ScriptFailed {
        label: String,
        package: String,
        script: String,
        code: i32,
        tail: String,
        log: PathBuf,
    },
    #[error(
        "{label}: debconf answer {question:?}: no package of this image has that question\nhelp: questions are `package/name` as in the package's templates (e.g. tzdata/Areas); remove it or fix the name"
    )]
    UnknownQuestion { label: String, question: String },
    #[error(
        "{label}: {package} made /{path} non-deterministic: {why}\nhelp: this output would differ between builds; report it, or set `configure = false` in [image] and provide the file with [[files]]"
    )]
    Nondeterministic {
        label: String,
        package: String,
        path: String,
        why: String,
    },
    #[error(
        "{label}: {package} removed /{path}, which an image layer ships\nhelp: a configuration layer only adds or changes paths; set `configure = false` in [image] if this package cannot be configured here"
    )]
    Removed {
        label: String,
        package: String,
        path: String,
    },
    #[error("{label}: {what} {}: {source}\nhelp: check free space and permissions there", path.display())]
    Io {
        label: String,
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: configuration layer: {1}")]
    Layer(String, #[source] layer::LayerError),
}

impl From<crate::sandbox::SandboxError> for ConfigureError {
    fn from(e: crate::sandbox::SandboxError) -> Self {
        ConfigureError::Sandbox(Box::new(e))
    }
}

fn io_err(label: &str, what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ConfigureError {
    let (label, what, path) = (label.to_string(), what.to_string(), path.to_path_buf());
    move |source| ConfigureError::Io {
        label,
        what,
        path,
        source,
    }
}

fn read_scripts(label: &str, p: &PackageRef) -> Result<plan::Scripts, ConfigureError> {
    let files = crate::deb::read_control_files(&p.deb, &crate::deb::Limits::default()).map_err(
        |source| ConfigureError::Control {
            label: label.to_string(),
            package: p.name.clone(),
            deb: p.deb.clone(),
            source: Box::new(source),
        },
    )?;
    let keep = ["preinst", "postinst", "config", "templates", "triggers"];
    Ok(plan::Scripts {
        name: p.name.clone(),
        files: files
            .into_iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .collect(),
    })
}

/// The prepared driver and what its run numbers mean.
struct Prepared {
    driver: String,
    /// Run number (1-based) -> (package, script).
    runs: Vec<(String, String)>,
    /// Files to place in the root: path -> (bytes, mode).
    files: BTreeMap<String, (Vec<u8>, u32)>,
}

fn prepare(spec: &ConfigureSpec) -> Result<Prepared, ConfigureError> {
    let label = &spec.label;
    let read = |v: &[PackageRef]| -> Result<Vec<plan::Scripts>, ConfigureError> {
        v.iter().map(|p| read_scripts(label, p)).collect()
    };
    let (conf, present) = (read(&spec.configure)?, read(&spec.present)?);
    let all: Vec<&plan::Scripts> = conf.iter().chain(present.iter()).collect();
    let runs = script_runs(spec, &conf);
    let selections = selections(spec, &all)?;
    // File triggers match the paths as the packages name them (as dpkg
    // matches them) and, on this merged-/usr root, where they land.
    let shipped: BTreeSet<String> = spec
        .configure
        .iter()
        .flat_map(|p| &p.paths)
        .flat_map(|p| [Some(p.clone()), layer::package::merge_usr(p)])
        .flatten()
        .collect();
    let conf_refs: Vec<&plan::Scripts> = conf.iter().collect();
    let activated = plan::activated(&conf_refs, &shipped);
    let interests = plan::interests(&all);
    let driver = plan::driver(&plan::Driver {
        runs: &runs,
        selections: &selections,
        interests: &interests,
        activated: &activated,
        arch: &spec.arch,
    });
    let mut run_names: Vec<(String, String)> = runs
        .iter()
        .map(|(p, s, _)| (p.clone(), s.clone()))
        .collect();
    for p in plan::trigger_runs(&interests) {
        run_names.push((p, "postinst triggered".into()));
    }
    Ok(Prepared {
        driver,
        runs: run_names,
        files: info_files(spec, &all),
    })
}

/// `preinst install` for every package in configuration order, then
/// `postinst configure`.
fn script_runs(spec: &ConfigureSpec, conf: &[plan::Scripts]) -> Vec<plan::Run> {
    let order = plan::order(
        &spec
            .configure
            .iter()
            .map(|p| (p.name.as_str(), &p.control))
            .collect::<Vec<_>>(),
    );
    let by_name: BTreeMap<&str, &plan::Scripts> =
        conf.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut runs: Vec<plan::Run> = Vec::new();
    for (script, args) in [
        ("preinst", vec!["install".to_string()]),
        ("postinst", vec!["configure".to_string(), String::new()]),
    ] {
        for n in &order {
            if by_name[n.as_str()].files.contains_key(script) {
                runs.push((n.clone(), script.into(), args.clone()));
            }
        }
    }
    runs
}

/// `debconf-set-selections` lines for the recipe's answers, typed from the
/// templates of the packages present.
fn selections(spec: &ConfigureSpec, all: &[&plan::Scripts]) -> Result<Vec<String>, ConfigureError> {
    let mut types = BTreeMap::new();
    for s in all {
        types.extend(s.template_types());
    }
    let mut out = Vec::new();
    for (q, v) in &spec.debconf {
        let t = types
            .get(q)
            .ok_or_else(|| ConfigureError::UnknownQuestion {
                label: spec.label.clone(),
                question: q.clone(),
            })?;
        let owner = q.split('/').next().unwrap_or(q);
        out.push(format!("{owner} {q} {t} {v}"));
    }
    Ok(out)
}

/// dpkg's `info/` directory: scripts, templates, triggers, `.list` files
/// of every package in the root (paths as the packages ship them, so
/// `dpkg -S /lib64` names libc6 as under real dpkg), and the database
/// format.
fn info_files(spec: &ConfigureSpec, all: &[&plan::Scripts]) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut files = BTreeMap::new();
    // Multi-arch info file names (`name:arch.list`) need database format 1.
    files.insert("var/lib/dpkg/info/format".into(), (b"1\n".to_vec(), 0o644));
    for p in spec.configure.iter().chain(&spec.present) {
        files.insert(
            format!("var/lib/dpkg/info/{}.list", info_name(p, &spec.arch)),
            (list_file(&p.paths), 0o644),
        );
    }
    for s in all {
        for (k, v) in &s.files {
            let mode = if k == "templates" || k == "triggers" {
                0o644
            } else {
                0o755
            };
            files.insert(
                format!("var/lib/dpkg/info/{}.{k}", s.name),
                (v.clone(), mode),
            );
        }
    }
    files
}

/// dpkg's name for a package's info files: `name:arch` for
/// `Multi-Arch: same` packages.
fn info_name(p: &PackageRef, arch: &str) -> String {
    if p.control.get("Multi-Arch") == Some("same") {
        format!("{}:{arch}", p.name)
    } else {
        p.name.clone()
    }
}

/// The dpkg database an image that ships dpkg carries, as `apt-get
/// install` leaves it: `var/lib/dpkg/status` (every package, sorted by
/// name, `Status: install ok installed`), `info/<pkg>.list` and
/// `info/<pkg>.md5sums`, and a whiteout of `status.d` (the package layers'
/// distroless metadata), so that `dpkg -l`, `dpkg -L`, `dpkg -S` and apt
/// see what the image holds and scanners read each package once.
pub fn database_entries(pkgs: &[PackageRef], arch: &str, sde: u64) -> Vec<Entry> {
    let origin = "dpkg database";
    let mut sorted: Vec<&PackageRef> = pkgs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut status = String::new();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for p in &sorted {
        if !status.is_empty() {
            status.push('\n');
        }
        status.push_str(p.control.stanza.trim_end());
        status.push_str("\nStatus: install ok installed\n");
        let info = info_name(p, arch);
        files.insert(
            format!("var/lib/dpkg/info/{info}.list"),
            list_file(&p.paths),
        );
        if let Some(md5) = &p.control.md5sums {
            files.insert(
                format!("var/lib/dpkg/info/{info}.md5sums"),
                md5.clone().into_bytes(),
            );
        }
    }
    files.insert("var/lib/dpkg/info/format".into(), b"1\n".to_vec());
    files.insert("var/lib/dpkg/status".into(), status.into_bytes());
    files.insert("var/lib/dpkg/.wh.status.d".into(), Vec::new());
    let mut out: Vec<Entry> = ["var", "var/lib", "var/lib/dpkg", "var/lib/dpkg/info"]
        .iter()
        .map(|d| Entry::dir(d, sde, origin))
        .collect();
    for (path, bytes) in files {
        let mut e = Entry::dir(&path, sde, origin);
        e.kind = layer::Kind::File;
        e.mode = 0o644;
        e.size = bytes.len() as u64;
        e.sha256 = Some(sha2::Sha256::digest(&bytes).into());
        e.content = layer::Content::Bytes(Arc::new(bytes));
        out.push(e);
    }
    out
}

/// A dpkg `.list` file: every shipped path (dpkg's database excluded),
/// for scripts that ask `dpkg -L`.
fn list_file(paths: &[String]) -> Vec<u8> {
    let mut v: Vec<&String> = paths
        .iter()
        .filter(|p| !p.starts_with("var/lib/dpkg/"))
        .collect();
    v.sort();
    v.dedup();
    let mut s = String::from("/.\n");
    for p in v {
        s.push('/');
        s.push_str(p);
        s.push('\n');
    }
    s.into_bytes()
}

/// Configure one image root; see the module documentation.
pub fn configure(
    spec: &ConfigureSpec,
    opts: &ConfigureOptions,
) -> Result<Configured, ConfigureError> {
    let label = spec.label.as_str();
    let prepared = prepare(spec)?;
    std::fs::create_dir_all(&opts.work_dir).map_err(io_err(label, "creating", &opts.work_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix("imgforge-configure-")
        .tempdir_in(&opts.work_dir)
        .map_err(io_err(label, "creating a directory in", &opts.work_dir))?;
    let (rootfs, ignored, mounted) = assemble(spec, opts, tmp.path())?;
    // The driver sees the overlay's upper directory (every path the scripts
    // wrote, and nothing else) here, so listing a script's changes walks
    // only those instead of the whole root.
    let upper = tmp.path().join("upper");
    let upper_view = format!("/{}/upper", plan::WORK);
    place_files(label, &rootfs, &prepared)?;
    let before = tree::snapshot(&rootfs).map_err(io_err(label, "reading", &rootfs))?;
    let log = tmp.path().join("configure.log");
    let argv = ["/bin/sh".to_string(), format!("/{}/driver", plan::WORK)];
    let run = crate::sandbox::InRoot {
        label,
        argv: &argv,
        env: &BTreeMap::new(),
        source_date_epoch: spec.source_date_epoch,
        work: tmp.path(),
        log: &log,
        runtime: opts.runtime.as_deref(),
        view: mounted
            .as_ref()
            .map(|_| (upper.as_path(), upper_view.as_str())),
        chroot: true,
    };
    let code = crate::sandbox::run_in_root(&rootfs, &run)?;
    if code != 0 {
        let keep = opts.logs.as_deref().unwrap_or(&opts.work_dir);
        return Err(script_failure(spec, &prepared, code, &log, keep));
    }
    let after = tree::snapshot(&rootfs).map_err(io_err(label, "reading", &rootfs))?;
    let changes = tree::diff(&before, &after, &ignored);
    let owners = attribution(&rootfs, &prepared);
    let who = |p: &str| {
        owners
            .get(p)
            .cloned()
            .unwrap_or_else(|| "(configure)".into())
    };
    if let Some(p) = changes.removed.first() {
        return Err(ConfigureError::Removed {
            label: label.into(),
            package: who(p),
            path: p.clone(),
        });
    }
    let (entries, created) =
        layer_entries(spec, &rootfs, &changes.changed, &after, &ignored, &who)?;
    let layer = if entries.is_empty() {
        None
    } else {
        let norm = layer::normalize(entries, &opts.lower_symlinks, spec.source_date_epoch)
            .map_err(|e| ConfigureError::Layer(label.into(), e))?;
        Some(
            layer::write_layer(&norm, &opts.write)
                .map_err(|e| ConfigureError::Layer(label.into(), e))?,
        )
    };
    let scripts = count_runs(&log);
    drop(mounted);
    let _ = tmp.close();
    Ok(Configured {
        layer,
        created,
        scripts,
    })
}

/// The image root in `tmp`: an overlay of shared layer trees where
/// mounting is allowed, else the layers unpacked into a directory. Returns
/// the root, the toolset paths the image does not ship (never part of the
/// result), and the mount (unmounted when dropped).
fn assemble(
    spec: &ConfigureSpec,
    opts: &ConfigureOptions,
    tmp: &Path,
) -> Result<(PathBuf, BTreeSet<String>, Option<overlay::Overlay>), ConfigureError> {
    let label = spec.label.as_str();
    let rootfs = tmp.join("rootfs");
    if let Some(trees) = &opts.trees {
        let blobs: Vec<PathBuf> = spec
            .toolset_layer
            .iter()
            .chain(&spec.toolset_config)
            .chain(&spec.layers)
            .cloned()
            .collect();
        let lower = trees.trees(label, &blobs)?;
        let dirs: Vec<&Path> = lower.iter().map(|t| t.dir.as_path()).collect();
        if let Ok(m) = overlay::mount(&dirs, &tmp.join("upper"), &tmp.join("ovl"), &rootfs) {
            let skip = usize::from(spec.toolset_layer.is_some())
                + usize::from(spec.toolset_config.is_some());
            let image: BTreeSet<&String> = lower[skip..].iter().flat_map(|t| &t.paths).collect();
            let ignored = match spec.toolset_layer {
                Some(_) => lower[0]
                    .paths
                    .iter()
                    .filter(|p| !image.contains(p))
                    .cloned()
                    .collect(),
                None => BTreeSet::new(),
            };
            return Ok((rootfs, ignored, Some(m)));
        }
        // Not allowed here (rootless): unpack instead.
        let _ = std::fs::remove_dir(&rootfs);
    }
    let toolset = match &spec.toolset_layer {
        Some(t) => crate::sandbox::unpack_layers(label, &rootfs, std::slice::from_ref(t))?,
        None => BTreeSet::new(),
    };
    if let Some(c) = &spec.toolset_config {
        crate::sandbox::unpack_layers(label, &rootfs, std::slice::from_ref(c))?;
    }
    let image = crate::sandbox::unpack_layers(label, &rootfs, &spec.layers)?;
    let ignored: BTreeSet<String> = toolset.difference(&image).cloned().collect();
    Ok((rootfs, ignored, None))
}

/// Layer entries for the changed paths, and who changed each.
#[allow(clippy::type_complexity)]
fn layer_entries(
    spec: &ConfigureSpec,
    rootfs: &Path,
    changed: &[String],
    after: &BTreeMap<String, tree::Obj>,
    ignored: &BTreeSet<String>,
    who: &dyn Fn(&str) -> String,
) -> Result<(Vec<Entry>, Vec<(String, String)>), ConfigureError> {
    let label = spec.label.as_str();
    let root = pyc::Root {
        dir: rootfs,
        after,
        changed,
        ignored,
        source_date_epoch: spec.source_date_epoch,
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut created = Vec::new();
    for p in changed {
        let o = &after[p];
        let refuse = |why| ConfigureError::Nondeterministic {
            label: label.into(),
            package: who(p),
            path: p.clone(),
            why,
        };
        if let Some(why) = tree::nondeterministic(p, o) {
            return Err(refuse(why));
        }
        let origin = format!("configure: {}", who(p));
        let mut e = tree::entry(rootfs, p, o, spec.source_date_epoch, &origin).map_err(io_err(
            label,
            "reading",
            &rootfs.join(p),
        ))?;
        if o.kind == tree::ObjKind::File {
            // A timestamp-based .pyc: its header set to the source as the
            // image has it (module `pyc`).
            if let Some(bytes) = pyc::fix(&root, p).map_err(refuse)? {
                let fixed = Entry::bytes(p, bytes, e.mode, e.mtime, "");
                (e.size, e.sha256, e.content) = (fixed.size, fixed.sha256, fixed.content);
            }
            // systemd's postinst makes a random machine id; an image ships
            // "uninitialized" (what mmdebstrap leaves): each container
            // gets its own id at first boot.
            if let Some(bytes) = java_keystore(rootfs, p, spec.source_date_epoch).map_err(refuse)? {
                let fixed = Entry::bytes(p, bytes, e.mode, e.mtime, "");
                (e.size, e.sha256, e.content) = (fixed.size, fixed.sha256, fixed.content);
            }
            if p == MACHINE_ID {
                let fixed = Entry::bytes(p, b"uninitialized\n".to_vec(), e.mode, e.mtime, "");
                (e.size, e.sha256, e.content) = (fixed.size, fixed.sha256, fixed.content);
            }
        }
        entries.push(e);
        created.push((who(p), p.clone()));
    }
    Ok((entries, created))
}

/// A Java KeyStore a script wrote, dated `SOURCE_DATE_EPOCH` (module
/// [`jks`]); `None` for any other file.
fn java_keystore(rootfs: &Path, p: &str, sde: u64) -> Result<Option<Vec<u8>>, String> {
    let path = rootfs.join(p);
    let mut head = [0u8; 12];
    let is = std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|_| jks::is_jks(&head));
    if !is {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read it: {e}"))?;
    let defaults = std::fs::read_to_string(rootfs.join("etc/default/cacerts")).ok();
    jks::normalize(&bytes, sde, &jks::passwords(defaults.as_deref()))
        .map(Some)
        .map_err(|why| format!("a Java KeyStore whose entries carry the build time: {why}"))
}

/// The machine id, made per run by systemd's scripts.
const MACHINE_ID: &str = "etc/machine-id";

fn place_files(label: &str, rootfs: &Path, prepared: &Prepared) -> Result<(), ConfigureError> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = prepared.files.clone();
    files.insert(
        format!("{}/driver", plan::WORK),
        (prepared.driver.clone().into_bytes(), 0o755),
    );
    for (rel, (bytes, mode)) in &files {
        let p = rootfs.join(rel);
        // The parents are plain directories of the image root or created
        // here; refuse to write through a symlink the image ships.
        let mut cur = rootfs.to_path_buf();
        for c in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            cur.push(c);
            match cur.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(io_err(label, "writing", &cur)(std::io::Error::other(
                        "not a directory (a symlink or file shipped by a layer)",
                    )));
                }
                Err(_) => std::fs::create_dir(&cur).map_err(io_err(label, "creating", &cur))?,
            }
        }
        std::fs::write(&p, bytes).map_err(io_err(label, "writing", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
            .map_err(io_err(label, "chmod", &p))?;
    }
    Ok(())
}

/// Path -> the package whose script last created or changed it.
fn attribution(rootfs: &Path, prepared: &Prepared) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let dir = rootfs.join(plan::WORK).join("changes");
    for (i, (pkg, _)) in prepared.runs.iter().enumerate() {
        let Ok(text) = std::fs::read_to_string(dir.join((i + 1).to_string())) else {
            continue;
        };
        for l in text.lines() {
            let p = l.trim_start_matches('/');
            if !p.is_empty() {
                out.insert(p.to_string(), pkg.clone());
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("0")) {
        for l in text.lines() {
            out.entry(l.trim_start_matches('/').to_string())
                .or_insert_with(|| "debconf preseeding".into());
        }
    }
    out
}

fn count_runs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with("imgforge-configure: "))
                .count()
        })
        .unwrap_or(0)
}

fn script_failure(
    spec: &ConfigureSpec,
    prepared: &Prepared,
    code: i32,
    log: &Path,
    keep_dir: &Path,
) -> ConfigureError {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (run, code) = text
        .lines()
        .filter_map(|l| l.strip_prefix("imgforge-configure-failed: "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.parse::<usize>().ok()?,
                it.next()?.parse::<i32>().ok()?,
            ))
        })
        .next_back()
        .unwrap_or((usize::MAX, code));
    let (package, script) = match run {
        0 => ("debconf".to_string(), "debconf-set-selections".to_string()),
        n if n <= prepared.runs.len() => prepared.runs[n - 1].clone(),
        _ => ("(driver)".into(), "configure driver".into()),
    };
    let kept = keep_dir.join(format!(
        "configure-{}.log",
        spec.label
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let copied = std::fs::create_dir_all(keep_dir).and_then(|_| std::fs::copy(log, &kept));
    let log_path = match copied {
        Ok(_) => kept,
        Err(_) => log.to_path_buf(),
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    ConfigureError::ScriptFailed {
        label: spec.label.clone(),
        package,
        script,
        code,
        tail,
        log: log_path,
    }
}
