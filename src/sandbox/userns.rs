//! Rootless mode's user namespace: the caller as root, and a subordinate
//! id range for every other id.
//!
//! Run by a user other than root, a sandboxed command gets a user
//! namespace mapping its root (uid and gid 0) to the calling user, and its
//! ids 1..=65536 to the user's subordinate range from `/etc/subuid` and
//! `/etc/subgid`. Maintainer scripts and build steps can then `chown` to
//! system users and groups (`root:mail`, `root:staff`, `_apt`...), as they
//! do as root. An unprivileged process may map only its own id itself; the
//! runtime (runc, crun) writes the other ranges through the setuid helpers
//! `newuidmap` and `newgidmap` (Debian: package `uidmap`), which check the
//! range against those files.
//!
//! Files the sandbox writes then carry host ids: the caller's for root,
//! `start + id - 1` for another id. [`container_owner`] turns them back into
//! the ids the scripts set, so a configuration layer built rootless records
//! exactly the owners a root build records.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How many ids besides root the namespace maps at most: 1..=65536, so
/// `nobody` (65534) is among them.
pub const IDS: u32 = 65536;

/// The id written for a host id the namespace does not map (the kernel's
/// overflow id, what a process inside sees for it).
const OVERFLOW: u32 = 65534;

/// A subordinate range: host ids `start..start + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The ids of a rootless sandbox: the caller's (mapped to 0) and the
/// subordinate ranges (mapped from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub uids: Range,
    pub gids: Range,
}

impl IdMap {
    /// The spec's `uidMappings` and `gidMappings`.
    pub fn mappings(&self) -> (serde_json::Value, serde_json::Value) {
        let map = |own: u32, r: Range| {
            serde_json::json!([
                {"containerID": 0, "hostID": own, "size": 1},
                {"containerID": 1, "hostID": r.start, "size": r.count.min(IDS)},
            ])
        };
        (map(self.uid, self.uids), map(self.gid, self.gids))
    }

    /// The id a process in the namespace sees for host id `host`.
    fn inside(own: u32, r: Range, host: u32) -> u32 {
        if host == own {
            0
        } else if host >= r.start && host - r.start < r.count.min(IDS) {
            host - r.start + 1
        } else {
            OVERFLOW
        }
    }

    /// The owner a process in the namespace sees for host ids `(uid, gid)`.
    pub fn owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        (
            Self::inside(self.uid, self.uids, uid),
            Self::inside(self.gid, self.gids, gid),
        )
    }
}

/// Why a rootless sandbox cannot be set up; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootlessError {
    #[error(
        "running as {user} (uid {id}), not root, and {file} gives {user} no subordinate id range\nhelp: maintainer scripts and build steps chown files to system users and groups (such as mail or staff), which a rootless sandbox maps from a subordinate range: add one (any 65536 ids no other user has) with `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`, or build as root"
    )]
    NoRange { user: String, id: u32, file: String },
    #[error(
        "running as {user}, not root: `{tool}` is not on PATH\nhelp: install the uidmap package (`sudo apt-get install uidmap`): its setuid newuidmap and newgidmap map the subordinate id range into the sandbox's user namespace"
    )]
    NoHelper { user: String, tool: &'static str },
}

/// The rootless mapping of this process: `None` as root, else the mapping
/// or why there is none. Read once (the ranges do not change during a run).
pub fn current() -> &'static Result<Option<IdMap>, RootlessError> {
    static IDS_OF_PROCESS: OnceLock<Result<Option<IdMap>, RootlessError>> = OnceLock::new();
    IDS_OF_PROCESS.get_or_init(|| {
        let uid = rustix::process::geteuid().as_raw();
        if uid == 0 {
            return Ok(None);
        }
        let gid = rustix::process::getegid().as_raw();
        let user = user_name(uid);
        let path = std::env::var_os("PATH");
        let dirs: Vec<PathBuf> = path
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        for tool in ["newuidmap", "newgidmap"] {
            if !dirs.iter().any(|d| d.join(tool).is_file()) {
                return Err(RootlessError::NoHelper {
                    user: user.clone(),
                    tool,
                });
            }
        }
        let range = |file: &str, id: u32| {
            let text = std::fs::read_to_string(Path::new(file)).unwrap_or_default();
            find_range(&text, &user, id).ok_or_else(|| RootlessError::NoRange {
                user: user.clone(),
                id,
                file: file.to_string(),
            })
        };
        Ok(Some(IdMap {
            uid,
            gid,
            uids: range("/etc/subuid", uid)?,
            gids: range("/etc/subgid", uid)?,
        }))
    })
}

/// The owner a sandboxed process sees for a file's host ids: unchanged as
/// root; rootless, the caller is 0 and the subordinate range 1 and up.
pub fn container_owner(uid: u32, gid: u32) -> (u32, u32) {
    match current() {
        Ok(Some(m)) => m.owner(uid, gid),
        _ => (uid, gid),
    }
}

/// The user's name (for `/etc/subuid` and the messages), or its number.
fn user_name(uid: u32) -> String {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 << 10];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live, correctly sized memory; on success
    // `pw.pw_name` points into `buf`, read before `buf` is dropped.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return uid.to_string();
    }
    unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// The first range of `/etc/subuid` (or `subgid`) text for the user, named
/// or by number (`name:start:count` lines, as newuidmap reads them).
fn find_range(text: &str, user: &str, id: u32) -> Option<Range> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != user && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        let r = Range {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (r.count > 0).then_some(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_found_by_name_or_number() {
        let text = "other:100000:65536\n# comment\nbuild:165536:65536\n1001:300000:10\n";
        let r = |start, count| Some(Range { start, count });
        assert_eq!(find_range(text, "build", 1000), r(165536, 65536));
        assert_eq!(find_range(text, "x", 1001), r(300000, 10));
        assert_eq!(find_range(text, "nobody", 65534), None);
        assert_eq!(find_range("build:1:0\n", "build", 5), None);
    }

    #[test]
    fn host_ids_map_back_to_the_ids_inside() {
        let m = IdMap {
            uid: 1000,
            gid: 1001,
            uids: Range {
                start: 100000,
                count: 65536,
            },
            gids: Range {
                start: 200000,
                count: 100,
            },
        };
        assert_eq!(m.owner(1000, 1001), (0, 0));
        // mail (8): the range's eighth id.
        assert_eq!(m.owner(100007, 200007), (8, 8));
        assert_eq!(m.owner(100000 + 65535, 200000 + 99), (65536, 100));
        // Not mapped: what a process inside sees.
        assert_eq!(m.owner(0, 200100), (OVERFLOW, OVERFLOW));
        let (u, g) = m.mappings();
        assert_eq!(u[1]["hostID"], 100000);
        assert_eq!(u[1]["size"], 65536);
        assert_eq!(g[0]["hostID"], 1001);
        assert_eq!(g[1]["size"], 100);
    }
}
