//! Snapshots of a root before and after configuration, and the difference
//! as layer entries.
//!
//! A snapshot records, per path, its type, permission bits, owner (as the
//! sandbox sees it: rootless, the host's ids mapped back), size,
//! and the inode's identity and change time: any write, `chmod`, `chown`,
//! rename or replacement changes the `ctime` or the inode, so an unchanged
//! record means an unchanged object without hashing every file twice.
//!
//! What never ships (see [`dropped`]): the driver's work directory, dpkg's
//! database (`var/lib/dpkg`: status.d is written by the layer stage),
//! logs, debconf's database and its backups (`var/cache/debconf`: it holds
//! the toolset's questions too), ldconfig's `aux-cache`, the shadow
//! backups (`etc/passwd-`...), `tmp`, and the runtime's mount points.

use crate::layer::{Content, Entry, Kind};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One object of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obj {
    pub kind: ObjKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub ino: u64,
    pub ctime: (i64, i64),
}

/// The type of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjKind {
    Dir,
    File,
    Symlink(String),
    /// Sockets, FIFOs, devices: never allowed in a configuration layer.
    Other,
}

/// Why a path never reaches the configuration layer, or `None`.
pub fn dropped(path: &str) -> Option<&'static str> {
    const TREES: [(&str, &str); 9] = [
        (super::plan::WORK, "imgforge's driver"),
        (
            "var/lib/dpkg",
            "dpkg database (status.d comes from the layer stage)",
        ),
        ("var/log", "log"),
        ("var/cache/debconf", "debconf database of the configure run"),
        ("var/cache/ldconfig", "ldconfig aux-cache"),
        ("tmp", "temporary"),
        ("proc", "mount point"),
        ("sys", "mount point"),
        ("dev", "mount point"),
    ];
    for (t, why) in TREES {
        if path == t || path.strip_prefix(t).is_some_and(|r| r.starts_with('/')) {
            return Some(why);
        }
    }
    const FILES: [&str; 6] = [
        "etc/passwd-",
        "etc/group-",
        "etc/shadow-",
        "etc/gshadow-",
        "etc/subuid-",
        "etc/subgid-",
    ];
    if FILES.contains(&path) {
        return Some("backup");
    }
    None
}

/// Walk `root` (without following symlinks), skipping dropped subtrees.
pub fn snapshot(root: &Path) -> std::io::Result<BTreeMap<String, Obj>> {
    let mut out = BTreeMap::new();
    let mut it = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(std::io::Error::from)?;
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        if dropped(&rel).is_some() {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let md = e.path().symlink_metadata()?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            ObjKind::Dir
        } else if ft.is_file() {
            ObjKind::File
        } else if ft.is_symlink() {
            ObjKind::Symlink(std::fs::read_link(e.path())?.to_string_lossy().into_owned())
        } else {
            ObjKind::Other
        };
        // Rootless, the sandbox's ids are the caller's and a subordinate
        // range on the host: recorded as the scripts set them.
        let (uid, gid) = crate::sandbox::container_owner(md.uid(), md.gid());
        out.insert(
            rel,
            Obj {
                kind,
                mode: md.mode() & 0o7777,
                uid,
                gid,
                size: md.size(),
                ino: md.ino(),
                ctime: (md.ctime(), md.ctime_nsec()),
            },
        );
    }
    Ok(out)
}

/// The difference between two snapshots, ignoring `ignored` paths (the
/// toolset's own files).
#[derive(Debug, Default)]
pub struct Changes {
    /// Created or changed, sorted.
    pub changed: Vec<String>,
    /// Present before, gone after.
    pub removed: Vec<String>,
}

pub fn diff(
    before: &BTreeMap<String, Obj>,
    after: &BTreeMap<String, Obj>,
    ignored: &BTreeSet<String>,
) -> Changes {
    let (kids_before, kids_after) = (children(before), children(after));
    let mut c = Changes::default();
    for (p, o) in after {
        if ignored.contains(p) {
            continue;
        }
        let changed = match before.get(p) {
            None => true,
            // A directory changed when its metadata or its entries did. Its
            // inode and change time are not compared: an overlay root
            // copies a directory up when anything below it changes.
            Some(b) if b.kind == ObjKind::Dir && o.kind == ObjKind::Dir => {
                (b.mode, b.uid, b.gid) != (o.mode, o.uid, o.gid)
                    || kids_before.get(p.as_str()) != kids_after.get(p.as_str())
            }
            Some(b) => b != o,
        };
        if changed {
            c.changed.push(p.clone());
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) && !ignored.contains(p) {
            c.removed.push(p.clone());
        }
    }
    c
}

/// Directory -> the names of its entries (as snapshotted), sorted.
fn children(m: &BTreeMap<String, Obj>) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in m.keys() {
        let (parent, name) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
        out.entry(parent).or_default().push(name);
    }
    out
}

/// A layer entry for a changed path (content read from the root).
pub fn entry(root: &Path, path: &str, o: &Obj, sde: u64, origin: &str) -> std::io::Result<Entry> {
    let name = |id: u32| {
        if id == 0 {
            "root".to_string()
        } else {
            String::new()
        }
    };
    let (kind, size, content, sha) = match &o.kind {
        ObjKind::Dir => (Kind::Dir, 0, Content::None, None),
        ObjKind::Symlink(t) => (Kind::Symlink(t.clone()), 0, Content::None, None),
        ObjKind::File | ObjKind::Other => {
            let file = root.join(path);
            let (hex, size) = crate::digest::sha256_file(&file)?;
            let mut sha = [0u8; 32];
            hex::decode_to_slice(&hex, &mut sha).expect("hex digest");
            (Kind::File, size, Content::Path(file), Some(sha))
        }
    };
    Ok(Entry {
        path: path.to_string(),
        kind,
        mode: if matches!(o.kind, ObjKind::Symlink(_)) {
            0o777
        } else {
            o.mode
        },
        uid: o.uid.into(),
        gid: o.gid.into(),
        uname: name(o.uid),
        gname: name(o.gid),
        mtime: sde,
        size,
        content,
        sha256: sha,
        origin: origin.to_string(),
    })
}

/// Why a changed path cannot be made deterministic, or `None`. (A
/// timestamp-based `.pyc` is rewritten or refused by [`super::pyc`].)
pub fn nondeterministic(path: &str, o: &Obj) -> Option<String> {
    if o.kind == ObjKind::Other {
        return Some("a socket, FIFO or device node".into());
    }
    let base = path.rsplit('/').next().unwrap_or(path);
    if matches!(
        path,
        "var/lib/dbus/machine-id" | "var/lib/systemd/random-seed"
    ) || (path.starts_with("etc/ssh/") && base.starts_with("ssh_host_"))
    {
        return Some("random per run (machine id, seed or host key)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: ObjKind, ino: u64, ctime: i64) -> Obj {
        Obj {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            ino,
            ctime: (ctime, 0),
        }
    }

    fn snap(v: &[(&str, Obj)]) -> BTreeMap<String, Obj> {
        v.iter().map(|(p, o)| (p.to_string(), o.clone())).collect()
    }

    #[test]
    fn a_directory_changes_with_its_entries_or_metadata_not_its_inode() {
        let before = snap(&[
            ("etc", obj(ObjKind::Dir, 1, 1)),
            ("etc/a", obj(ObjKind::File, 2, 1)),
            ("var", obj(ObjKind::Dir, 3, 1)),
            ("var/x", obj(ObjKind::Dir, 4, 1)),
            ("usr", obj(ObjKind::Dir, 5, 1)),
        ]);
        // etc: copied up (new inode and ctime), same entries -> unchanged;
        // var: a new entry -> changed; usr: chmod -> changed; etc/a
        // rewritten (new ctime) -> changed; var/x/new created.
        let mut usr = obj(ObjKind::Dir, 5, 1);
        usr.mode = 0o700;
        let after = snap(&[
            ("etc", obj(ObjKind::Dir, 90, 9)),
            ("etc/a", obj(ObjKind::File, 2, 9)),
            ("var", obj(ObjKind::Dir, 3, 1)),
            ("var/new", obj(ObjKind::File, 91, 9)),
            ("var/x", obj(ObjKind::Dir, 92, 9)),
            ("usr", usr),
        ]);
        let c = diff(&before, &after, &BTreeSet::new());
        assert_eq!(c.changed, ["etc/a", "usr", "var", "var/new"]);
        assert!(c.removed.is_empty());
        let gone = diff(&after, &before, &BTreeSet::from(["var/new".to_string()]));
        assert!(gone.removed.is_empty(), "ignored paths are never removed");
    }
}
