//! Scratch directories, where they go, and what a killed build left.
//!
//! A build works in a `.imgforge-scratch-*` directory (decompressed
//! packages, layer trees, the roots its maintainer scripts and build steps
//! run in, which are overlayfs mounts). None of it outlives the build, and
//! none of it reaches an output, so it goes where it is cheapest ([`parent`]):
//! `--scratch DIR` if given, else `/dev/shm` when that is a tmpfs with room
//! to spare (free space and available memory both at least 1 GiB plus eight
//! times the locked packages' size: the decompressed copies and the layer
//! trees), else beside the output. On this project's 2-core machine, whose
//! root file system is ext4 mounted with `discard`, a cold build of the
//! examples with its output and cache on ext4 took 7.0-8.5 s (two series)
//! with its scratch beside the output and 6.1-6.3 s with it on tmpfs (same
//! bytes). Copies of decompressed packages that do not fit are simply not
//! kept (`deb::plain`); layer trees that do not fit fail the build, naming
//! the file: `--scratch` then moves the scratch elsewhere. A build that ends, even with an
//! error, removes its own. A build that is killed cannot: its scratch stays,
//! and so do the overlay mounts inside it, which keep the layer trees busy
//! and cannot be removed with `rm -r`.
//!
//! So each scratch directory records its owner (`owner`: the process id and
//! its start time from `/proc/<pid>/stat`, which tells a reused process id
//! apart), and every build first sweeps its output's parent: a scratch
//! directory whose owner is no longer running (or is a zombie: killed, not
//! yet reaped) has its mounts detached
//! (deepest first, read from `/proc/self/mountinfo`) and is removed. A
//! directory without an `owner` file, or whose owner still runs (another
//! build beside this one), is left alone.

use std::path::{Path, PathBuf};

/// Where a build's scratch directory goes: `chosen` (`--scratch`), else
/// `/dev/shm` when it is a tmpfs with room for `need` bytes beyond 1 GiB of
/// free space and of available memory, else `beside` (the output's
/// parent).
pub fn parent(chosen: Option<&Path>, need: u64, beside: &Path) -> PathBuf {
    if let Some(dir) = chosen {
        return dir.to_path_buf();
    }
    let shm = Path::new("/dev/shm");
    let room = need.saturating_add(1 << 30);
    let tmpfs = rustix::fs::statfs(shm).is_ok_and(|s| s.f_type == 0x0102_1994);
    let free = rustix::fs::statvfs(shm).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
    match tmpfs && free >= room && available_memory() >= room && writable(shm) {
        true => shm.to_path_buf(),
        false => beside.to_path_buf(),
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (0 when unknown).
fn available_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024))
}

fn writable(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

/// Name prefix of a build's scratch directory.
pub const PREFIX: &str = ".imgforge-scratch-";

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Stale scratch directories removed.
    pub dirs: Vec<PathBuf>,
    /// Mounts detached inside them.
    pub mounts: usize,
    /// Stale directories that could not be removed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// `pid start-time` of process `pid`, if it runs.
fn identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (start time) counts after the command name, which is in
    // parentheses and may hold spaces.
    let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // A zombie (`Z`, killed and not yet reaped) has ended.
    if rest.first() == Some(&"Z") {
        return None;
    }
    Some(format!("{pid} {}", rest.get(19)?))
}

/// Record this process as the owner of the scratch directory `dir`.
pub fn claim(dir: &Path) -> std::io::Result<()> {
    let me = identity(std::process::id()).unwrap_or_default();
    std::fs::write(dir.join("owner"), format!("{me}\n"))
}

/// Whether the owner recorded in `dir` no longer runs.
fn is_stale(dir: &Path) -> bool {
    let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else {
        return false;
    };
    let owner = owner.trim();
    let Some(pid) = owner.split(' ').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    identity(pid).as_deref() != Some(owner)
}

/// Undo the `\NNN` octal escapes of a mountinfo path.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
    ))
}

/// Mount points at or under `dir`, deepest first, from mountinfo text.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// Detach every mount under `dir`; how many.
fn detach_all(dir: &Path) -> Result<usize, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mounts = mounts_under(&info, dir);
    for m in &mounts {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(m.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("cannot unmount {}: {e}", m.display()));
        }
    }
    Ok(mounts.len())
}

/// Remove the stale scratch directories in `parent` (see the module docs).
pub fn sweep(parent: &Path) -> Swept {
    let mut swept = Swept::default();
    // Mount points in mountinfo are absolute, with symlinks resolved.
    let Ok(parent) = std::fs::canonicalize(parent) else {
        return swept;
    };
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return swept;
    };
    let mut stale: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_stale(p))
        .collect();
    stale.sort();
    for dir in stale {
        let removed = detach_all(&dir).and_then(|n| {
            std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
            Ok(n)
        });
        match removed {
            Ok(n) => {
                swept.mounts += n;
                swept.dirs.push(dir);
            }
            Err(reason) => swept.failed.push((dir, reason)),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_goes_where_asked_else_beside_when_tmpfs_has_no_room() {
        let beside = Path::new("/nonexistent/out-parent");
        let asked = Path::new("/somewhere/else");
        assert_eq!(parent(Some(asked), 0, beside), asked);
        // No tmpfs has room for this.
        assert_eq!(parent(None, u64::MAX / 2, beside), beside);
    }

    #[test]
    fn mountinfo_paths_are_unescaped_and_deepest_first() {
        let info = "\
36 25 0:32 / /proc rw - proc proc rw
90 36 0:50 / /x/.imgforge-scratch-a/c\\040d/rootfs rw - overlay overlay rw
91 90 0:51 / /x/.imgforge-scratch-a/c\\040d/rootfs/proc rw - proc proc rw
92 36 0:52 / /x/.imgforge-scratch-b/rootfs rw - overlay overlay rw
";
        let got = mounts_under(info, Path::new("/x/.imgforge-scratch-a"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/x/.imgforge-scratch-a/c d/rootfs/proc"),
                PathBuf::from("/x/.imgforge-scratch-a/c d/rootfs"),
            ]
        );
    }

    #[test]
    fn owner_running_or_unknown_is_not_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(format!("{PREFIX}x"));
        std::fs::create_dir(&dir).unwrap();
        assert!(!is_stale(&dir), "no owner file: left alone");
        claim(&dir).unwrap();
        assert!(!is_stale(&dir), "this process runs");
        // A process that has ended.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = identity(pid);
        child.wait().unwrap();
        let owner = start.unwrap_or_else(|| format!("{pid} 0"));
        std::fs::write(dir.join("owner"), format!("{owner}\n")).unwrap();
        assert!(is_stale(&dir), "its owner has ended");
        // The same pid with another start time (a reused pid).
        let me = identity(std::process::id()).unwrap();
        let other = format!("{} 1", std::process::id());
        assert_ne!(me, other);
        std::fs::write(dir.join("owner"), other).unwrap();
        assert!(is_stale(&dir), "a reused pid is not the owner");
        let swept = sweep(tmp.path());
        assert_eq!(swept.dirs, vec![dir.clone()]);
        assert!(!dir.exists());
    }
}
