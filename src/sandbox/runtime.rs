//! Running one build step in an OCI runtime (runc or crun).
//!
//! Each step gets a fresh bundle: a `config.json` written by [`spec`]
//! (canonical JSON, so identical inputs give identical bytes) whose root is
//! the build root, and runs as `<runtime> --root <state> run --bundle
//! <bundle> <id>` with stdin closed and stdout/stderr appended to the step's
//! log file. (runc relays a foreground container's stdout and stderr through
//! one pipe each, so lines written to both streams within microseconds may
//! appear in the log slightly out of order; each stream stays in order.) The container id embeds the stage's unique temporary directory
//! name, so concurrent stages never collide (the id also names the cgroup).
//!
//! The spec is the `runc spec` default tightened for builds:
//!
//! * root: the build root, writable; `/src` is a read-only bind of
//!   `<root>/src` (the copied context, never a host path); `/tmp` is a fresh
//!   tmpfs (1777); `/proc`, `/dev` (tmpfs with the runtime's minimal device
//!   set), `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys` (read-only). No
//!   host path is mounted.
//! * namespaces: pid, network, ipc, uts, mount, cgroup. The new network
//!   namespace has only loopback (the runtime brings `lo` up), so neither
//!   the internet nor the host's loopback is reachable.
//! * hostname `imgforge-build`, NIS domain name `(none)`, personality
//!   `LINUX`; `process.terminal = false`; uid/gid 0 with
//!   umask 022; `noNewPrivileges`; capabilities: a Docker-like build set
//!   without `NET_RAW`, `MKNOD`, `SYS_ADMIN` (chown, dac_override, fowner,
//!   fsetid, kill, setgid, setuid, setpcap, setfcap, net_bind_service,
//!   sys_chroot, audit_write); devices cgroup deny-all (plus the runtime's
//!   defaults); the usual masked and read-only `/proc` paths.
//! * env: only `SOURCE_DATE_EPOCH`, `LC_ALL=C.UTF-8`, `TZ=UTC`,
//!   `HOME=/root`, `PATH=/usr/local/sbin:...:/bin`, then the recipe env
//!   (which may override all but `SOURCE_DATE_EPOCH`); cwd `/src`.
//!
//! * limits: a memory limit (cgroup, swap included) and a wall-clock limit
//!   per step ([`crate::limits`]); a step over its time is killed
//!   (`runc kill KILL`) and reported as such;
//! * a seccomp profile (module `seccomp`) denying mount, namespace, module,
//!   bpf, ptrace, keyring and similar syscalls with `EPERM`.
//!
//! * the machine the step sees is fixed before the runtime starts, since
//!   its processes inherit it (`fixed_machine`): runc 1.1 ignores the
//!   spec's `linux.personality` and `domainname` (measured), so a
//!   `setarch --uname-2.6` or `setarch i686` around imgforge would reach the
//!   scripts (libc6's preinst then refuses a "2.6" kernel).
//!
//! Run as root, there is no user namespace: the build runs as root in its
//! namespaces, as `docker build` does; the isolation is namespaces,
//! capabilities, seccomp and a root holding only copies. Run by another
//! user, the spec is made rootless ([`rootless_ids`]): a user namespace maps
//! the caller to root and a subordinate id range to the other ids (module
//! `userns`), and the memory limit becomes an rlimit.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Directories searched for a runtime besides `PATH`.
const EXTRA_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/sbin"];

/// The fixed `PATH` inside the sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The fixed hostname inside the sandbox.
pub const HOSTNAME: &str = "imgforge-build";

/// The fixed NIS domain name inside the sandbox (the kernel's default).
pub const DOMAINNAME: &str = "(none)";

/// Linux's default personality (`PER_LINUX` of `<sys/personality.h>`): no
/// `UNAME26`, not `LINUX32`, address randomization on.
const PER_LINUX: libc::c_ulong = 0;

/// Fix, in the runtime's process before it starts, what a step would
/// otherwise inherit from the host (runc 1.1 ignores the spec's
/// `linux.personality` and `domainname`; measured):
///
/// * the personality becomes `PER_LINUX`: `uname -r` is the running
///   kernel's release, never a `setarch --uname-2.6` "2.6.x", and `uname -m`
///   the kernel's machine, never `setarch i686`'s;
/// * the CPU affinity becomes every CPU the process's cpuset allows, so a
///   `taskset` around imgforge does not change what `nproc` says (it is the
///   machine's CPU count, as the cgroup allows it);
/// * as root, the runtime gets a UTS namespace of its own with the NIS
///   domain name `(none)`, which the step's namespace copies (its hostname
///   is the spec's). Rootless, the host's domain name stays visible.
fn fixed_machine(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let root = rustix::process::geteuid().is_root();
    // SAFETY: the closure runs in the child between fork and exec; it only
    // makes system calls on stack data (no allocation, no lock). Failures
    // leave that one property as inherited.
    unsafe {
        cmd.pre_exec(move || {
            libc::personality(PER_LINUX);
            let mut all: libc::cpu_set_t = std::mem::zeroed();
            for cpu in 0..libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu, &mut all);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &all);
            if root && libc::unshare(libc::CLONE_NEWUTS) == 0 {
                libc::setdomainname(DOMAINNAME.as_ptr().cast(), DOMAINNAME.len());
            }
            Ok(())
        });
    }
}

fn is_executable(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| {
        m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
    })
}

/// Find the runtime: `crun`, else `runc`, on `PATH` or in the sbin dirs.
pub fn find() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(EXTRA_DIRS.iter().map(PathBuf::from));
    for name in ["crun", "runc"] {
        for d in &dirs {
            let p = d.join(name);
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    None
}

/// Whether an explicitly given runtime path is usable.
pub fn usable(p: &Path) -> bool {
    is_executable(p)
}

/// The environment of a step: fixed values, then the recipe's.
pub fn environment(sde: u64, recipe_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("HOME".to_string(), "/root".to_string());
    env.insert("LC_ALL".to_string(), "C.UTF-8".to_string());
    env.insert("PATH".to_string(), SANDBOX_PATH.to_string());
    env.insert("TZ".to_string(), "UTC".to_string());
    for (k, v) in recipe_env {
        env.insert(k.clone(), v.clone());
    }
    env.insert("SOURCE_DATE_EPOCH".to_string(), sde.to_string());
    env
}

/// The OCI runtime spec for one step.
pub fn spec(
    rootfs: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    limits: &crate::limits::StepLimits,
) -> serde_json::Value {
    use serde_json::json;
    let caps = [
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    ];
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let src = rootfs.join("src");
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0, "umask": 0o022},
            "args": argv,
            "env": env,
            "cwd": "/src",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs.to_string_lossy(), "readonly": false},
        "hostname": HOSTNAME,
        "domainname": DOMAINNAME,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/src", "type": "bind", "source": src.to_string_lossy(),
             "options": ["rbind", "ro", "nosuid", "nodev"]},
        ],
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                // swap == limit: no swapping past the limit.
                "memory": {"limit": limits.memory_bytes, "swap": limits.memory_bytes},
            },
            "personality": {"domain": "LINUX"},
            "seccomp": super::seccomp::profile(),
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    if let Some(ids) = rootless_ids() {
        make_rootless(&mut config, &ids, limits);
    }
    config
}

/// Where [`chrooted`] mounts the root inside the outer root.
const INNER: &str = "/imgforge-root";

/// Run the spec's command chrooted into `rootfs`, from an outer root made
/// in `outer` (an empty directory made here), as dpkg runs maintainer
/// scripts in a root built by debootstrap or mmdebstrap.
///
/// Why: scripts ask `ischroot`, which compares `/` with `/proc/1/root`. In a
/// container whose process 1 lives in the root itself, the answer is "not a
/// chroot", and libc6's postinst then re-executes init (`telinit u`) and
/// sleeps a second, on every configure of a root with libc6. With process 1
/// outside (a shell in the outer root running `chroot`), the scripts see a
/// chroot, as they do under mmdebstrap; nothing they write changes.
///
/// The outer root holds only symlinks into the root (`usr`, `bin`, the
/// library directories, `dev`, `proc`), so its shell runs the root's own `sh` and
/// `chroot`, and the runtime's devices land in the root's `/dev`. Every
/// mount of the spec moves beneath [`INNER`]. Leaves `config` alone when
/// the root has no `chroot` or `sh`.
pub fn chrooted(
    config: &mut serde_json::Value,
    rootfs: &Path,
    outer: &Path,
) -> std::io::Result<()> {
    use serde_json::json;
    let has = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).is_ok();
    if !has("usr/sbin/chroot") || !has("usr/bin/sh") {
        return Ok(());
    }
    std::fs::create_dir_all(outer.join(INNER.trim_start_matches('/')))?;
    for name in [
        "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "dev", "proc",
    ] {
        std::os::unix::fs::symlink(
            format!("{}/{name}", INNER.trim_start_matches('/')),
            outer.join(name),
        )?;
    }
    let inner = |p: &serde_json::Value| json!(format!("{INNER}{}", p.as_str().unwrap_or_default()));
    let mounts = config["mounts"]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut moved = vec![json!({"destination": INNER, "type": "bind",
        "source": rootfs.to_string_lossy(), "options": ["rbind"]})];
    for mut m in mounts {
        m["destination"] = inner(&m["destination"]);
        moved.push(m);
    }
    config["mounts"] = json!(moved);
    for key in ["maskedPaths", "readonlyPaths"] {
        if let Some(paths) = config["linux"][key].as_array_mut() {
            for p in paths.iter_mut() {
                *p = inner(p);
            }
        }
    }
    config["root"]["path"] = json!(outer.to_string_lossy());
    let argv = config["process"]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut args = vec![
        json!("/usr/bin/sh"),
        json!("-c"),
        json!(format!("/usr/sbin/chroot {INNER} \"$@\"; exit $?")),
        json!("imgforge-chroot"),
    ];
    args.extend(argv);
    config["process"]["args"] = json!(args);
    Ok(())
}

/// The ids a rootless container maps (module `userns`), or `None` when
/// imgforge runs as root (then the runtime runs rootful). Without a
/// subordinate range (an error [`super::userns::current`] reports before
/// any step runs), only the caller is mapped, to root.
fn rootless_ids() -> Option<super::userns::IdMap> {
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        return None;
    }
    match super::userns::current() {
        Ok(m) => m.clone(),
        Err(_) => {
            let gid = rustix::process::getegid().as_raw();
            let none = super::userns::Range { start: 0, count: 0 };
            Some(super::userns::IdMap {
                uid,
                gid,
                uids: none,
                gids: none,
            })
        }
    }
}

/// Adapt a rootful spec for a runtime started by an unprivileged user (runc
/// and crun detect that themselves and run rootless):
///
/// * a user namespace mapping the container's root (uid and gid 0) to the
///   calling user and ids 1..=65536 to the user's subordinate range, which
///   the runtime maps through `newuidmap`/`newgidmap` (module `userns`), so
///   scripts may `chown` to system users and groups as under root;
/// * no cgroup resources: an unprivileged user can create no cgroup unless
///   one was delegated to it, and the runtime then refuses a memory limit
///   (`cannot set memory limit: container could not join or create cgroup`).
///   The memory limit becomes `RLIMIT_AS` of every process instead: weaker
///   (per process, address space rather than resident memory), and an
///   allocation over it fails with `ENOMEM` instead of a kill.
fn make_rootless(
    config: &mut serde_json::Value,
    ids: &super::userns::IdMap,
    limits: &crate::limits::StepLimits,
) {
    use serde_json::json;
    let linux = &mut config["linux"];
    if let Some(ns) = linux["namespaces"].as_array_mut() {
        ns.push(json!({"type": "user"}));
    }
    let (mut uids, mut gids) = ids.mappings();
    for m in [&mut uids, &mut gids] {
        if let Some(v) = m.as_array_mut() {
            v.retain(|r| r["size"] != 0);
        }
    }
    let tty_mapped = gids.as_array().is_some_and(|v| v.len() > 1) && ids.gids.count >= 5;
    linux["uidMappings"] = uids;
    linux["gidMappings"] = gids;
    if let Some(l) = linux.as_object_mut() {
        l.remove("resources");
    }
    for m in config["mounts"].as_array_mut().into_iter().flatten() {
        // `gid=5` (tty) only where that group is mapped.
        if m["type"] == "devpts"
            && !tty_mapped
            && let Some(opts) = m["options"].as_array_mut()
        {
            opts.retain(|o| o != "gid=5");
        }
    }
    if let Some(r) = config["process"]["rlimits"].as_array_mut() {
        let bytes = limits.memory_bytes;
        r.push(json!({"type": "RLIMIT_AS", "hard": bytes, "soft": bytes}));
    }
}

/// How a step ended.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code (128 + signal when killed).
    pub code: i32,
    /// True when it was killed for running past its time limit.
    pub timed_out: bool,
}

/// Run one step: write the bundle, run the runtime, wait at most `timeout`.
pub fn run(
    runtime: &Path,
    bundle: &Path,
    state: &Path,
    id: &str,
    config: &serde_json::Value,
    log: &Path,
    timeout: std::time::Duration,
) -> std::io::Result<Outcome> {
    std::fs::create_dir_all(bundle)?;
    std::fs::create_dir_all(state)?;
    std::fs::write(
        bundle.join("config.json"),
        crate::json::to_canonical_pretty(config),
    )?;
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(runtime);
    cmd.arg("--root")
        .arg(state)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    fixed_machine(&mut cmd);
    let mut child = cmd.spawn()?;
    let deadline = std::time::Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if !timed_out && std::time::Instant::now() >= deadline {
            timed_out = true;
            // Kill the container's processes; `run` then exits.
            let _ = runtime_cmd(runtime, state, &["kill", id, "KILL"]);
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let code = match status.code() {
        Some(c) => c,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0),
    };
    if code != 0 || timed_out {
        // `run` deletes the container when it exits; after a runtime error
        // or a kill it may be left behind: clean up, ignoring errors.
        let _ = runtime_cmd(runtime, state, &["delete", "--force", id]);
    }
    Ok(Outcome { code, timed_out })
}

/// Run `<runtime> --root <state> <args>` quietly.
fn runtime_cmd(runtime: &Path, state: &Path, args: &[&str]) -> std::io::Result<()> {
    Command::new(runtime)
        .arg("--root")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_for(rootfs: &Path) -> serde_json::Value {
        let argv = ["/bin/sh".to_string(), "/driver".to_string()];
        spec(
            rootfs,
            &argv,
            &BTreeMap::new(),
            &crate::limits::StepLimits::default(),
        )
    }

    #[test]
    fn chrooted_moves_every_mount_beneath_the_root_and_wraps_the_command() {
        let d = tempfile::tempdir().unwrap();
        let rootfs = d.path().join("root");
        for p in ["usr/sbin/chroot", "usr/bin/sh"] {
            std::fs::create_dir_all(rootfs.join(p).parent().unwrap()).unwrap();
            std::fs::write(rootfs.join(p), b"").unwrap();
        }
        let outer = d.path().join("outer");
        let mut config = spec_for(&rootfs);
        let before = config["mounts"].as_array().unwrap().len();
        chrooted(&mut config, &rootfs, &outer).unwrap();
        assert_eq!(config["root"]["path"], outer.to_string_lossy().as_ref());
        let mounts = config["mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), before + 1);
        assert_eq!(mounts[0]["destination"], INNER);
        assert_eq!(mounts[0]["source"], rootfs.to_string_lossy().as_ref());
        assert!(
            mounts
                .iter()
                .all(|m| m["destination"].as_str().unwrap().starts_with(INNER)),
            "{mounts:?}"
        );
        assert!(
            mounts
                .iter()
                .any(|m| m["destination"] == "/imgforge-root/proc")
        );
        let args: Vec<&str> = config["process"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "/usr/bin/sh",
                "-c",
                "/usr/sbin/chroot /imgforge-root \"$@\"; exit $?",
                "imgforge-chroot",
                "/bin/sh",
                "/driver"
            ]
        );
        let masked = config["linux"]["maskedPaths"].as_array().unwrap();
        assert!(
            masked
                .iter()
                .all(|p| p.as_str().unwrap().starts_with(INNER))
        );
        assert_eq!(
            std::fs::read_link(outer.join("dev")).unwrap(),
            Path::new("imgforge-root/dev")
        );
    }

    #[test]
    fn the_spec_names_a_fixed_machine() {
        let d = tempfile::tempdir().unwrap();
        let config = spec_for(d.path());
        assert_eq!(config["hostname"], HOSTNAME);
        assert_eq!(config["domainname"], DOMAINNAME);
        assert_eq!(config["linux"]["personality"]["domain"], "LINUX");
    }

    /// Personality and affinity are per thread and inherited by children:
    /// this thread plays `setarch --uname-2.6` and `taskset -c 0`.
    #[test]
    fn fixed_machine_undoes_setarch_and_taskset() {
        const UNAME26: libc::c_ulong = 0x0020000;
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let before = unsafe {
            libc::sched_getaffinity(0, size, &mut saved);
            libc::CPU_SET(0, &mut one);
            libc::sched_setaffinity(0, size, &one);
            libc::personality(0xffff_ffff)
        };
        unsafe { libc::personality(UNAME26) };
        let probe = || {
            let mut c = Command::new("sh");
            c.args(["-c", "uname -r; nproc"]);
            c
        };
        let plain = probe().output();
        let mut cmd = probe();
        fixed_machine(&mut cmd);
        let fixed = cmd.output();
        let all = unsafe {
            libc::personality(before as libc::c_ulong);
            libc::sched_setaffinity(0, size, &saved);
            libc::CPU_COUNT(&saved)
        };
        let text = |o: std::io::Result<std::process::Output>| {
            String::from_utf8(o.unwrap().stdout).unwrap()
        };
        let (plain, fixed) = (text(plain), text(fixed));
        let lines = |t: &str| -> Vec<String> { t.lines().map(String::from).collect() };
        let (plain, fixed) = (lines(&plain), lines(&fixed));
        assert!(plain[0].starts_with("2.6."), "setarch's release: {plain:?}");
        assert_eq!(plain[1], "1");
        assert!(
            !fixed[0].starts_with("2.6."),
            "the kernel's release: {fixed:?}"
        );
        assert_eq!(fixed[1], all.to_string(), "every CPU allowed");
    }

    #[test]
    fn chrooted_leaves_a_root_without_chroot_alone() {
        let d = tempfile::tempdir().unwrap();
        let mut config = spec_for(d.path());
        let before = config.clone();
        chrooted(&mut config, d.path(), &d.path().join("outer")).unwrap();
        assert_eq!(config, before);
        assert!(!d.path().join("outer").exists());
    }
}
