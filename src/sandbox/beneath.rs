//! Filesystem operations confined beneath a root directory.
//!
//! The build root is written from untrusted input (layer tars, the context
//! directory) and read back after untrusted code ran in it (artifacts). Every
//! operation here therefore resolves paths itself, one component at a time,
//! starting from a directory file descriptor of the root:
//!
//! * each intermediate component is opened with
//!   `openat(parent, name, O_DIRECTORY | O_NOFOLLOW)`, so a symlink anywhere
//!   in the path fails (`ELOOP`/`ENOTDIR`) instead of being followed, whether
//!   it points at `/`, at `..` or at a host directory;
//! * the final component is created with `O_CREAT | O_EXCL | O_NOFOLLOW`
//!   (files), `mkdirat`, `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`,
//!   or inspected with `fstatat(AT_SYMLINK_NOFOLLOW)`: never through a link;
//! * names are validated first: no `..`, `.`, empty, NUL or `/` components.
//!
//! This is the portable equivalent of `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` and does not need that syscall (which gVisor and
//! older kernels lack). No string check on a joined host path is trusted.
//!
//! Nothing here follows a symlink, so symlinks inside the root may point
//! anywhere: they are data, interpreted only inside the container, where `/`
//! is the build root.

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why an operation beneath the root was refused or failed.
#[derive(Debug)]
pub enum Refused {
    /// A policy violation: the input tried to leave the root or is malformed.
    Hostile(String),
    /// An I/O error from the host filesystem.
    Io(io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Hostile(s) => f.write_str(s),
            Refused::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Self {
        Refused::Io(e)
    }
}

impl From<rustix::io::Errno> for Refused {
    fn from(e: rustix::io::Errno) -> Self {
        Refused::Io(e.into())
    }
}

/// Split a root-relative path into validated components. A leading `/` and
/// `.` components are dropped; `..`, NUL and an empty result are refused.
pub fn components(path: &str) -> Result<Vec<&str>, Refused> {
    if path.contains('\0') {
        return Err(Refused::Hostile("path contains a NUL byte".into()));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Refused::Hostile("path contains a '..' component".into()));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The kind of an existing filesystem object (never following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Missing,
    Dir,
    File,
    Symlink,
    Other,
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`, as a [`Found`] and the stat.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<(Found, Option<rfs::Stat>)> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let found = match rfs::FileType::from_raw_mode(st.st_mode) {
                rfs::FileType::Directory => Found::Dir,
                rfs::FileType::RegularFile => Found::File,
                rfs::FileType::Symlink => Found::Symlink,
                _ => Found::Other,
            };
            Ok((found, Some(st)))
        }
        Err(rustix::io::Errno::NOENT) => Ok((Found::Missing, None)),
        Err(e) => Err(e.into()),
    }
}

/// Open `name` in `dir` as a directory, refusing symlinks and non-directories.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &str, shown: &str) -> Result<OwnedFd, Refused> {
    match rfs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e) if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR => {
            let (found, _) = lstat_at(dir, name)?;
            Err(Refused::Hostile(if found == Found::Symlink {
                format!(
                    "{shown:?} is a symlink; nothing is written or read through a symlink in the build root"
                )
            } else {
                format!("{shown:?} is not a directory")
            }))
        }
        Err(e) => Err(Refused::Io(e.into())),
    }
}

/// List a directory's entry names (without `.` and `..`), sorted bytewise.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        match std::str::from_utf8(n) {
            Ok(s) => names.push(s.to_string()),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file name {:?} is not UTF-8", OsStr::from_bytes(n)),
                ));
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Remove `name` from `dir` (recursively for directories), never following
/// symlinks: a symlink is removed itself.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &str) -> Result<(), Refused> {
    let (found, _) = lstat_at(dir, name)?;
    match found {
        Found::Missing => Ok(()),
        Found::Dir => {
            let sub = open_subdir(dir, name, name)?;
            for child in list_dir(sub.as_fd())? {
                remove_all_at(sub.as_fd(), &child)?;
            }
            drop(sub);
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
            Ok(())
        }
        _ => {
            rfs::unlinkat(dir, name, AtFlags::empty())?;
            Ok(())
        }
    }
}

/// A directory that all paths are resolved beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Open an existing directory as a root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's host path (for messages and for the runtime spec only).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open the directory at `comps` beneath the root, never following a
    /// symlink. With `create`, missing directories are made (0755).
    pub fn open_dir(&self, comps: &[&str], create: bool) -> Result<OwnedFd, Refused> {
        let mut cur = rfs::openat(self.fd(), ".", DIR_FLAGS, Mode::empty())?;
        for (i, c) in comps.iter().enumerate() {
            let shown = comps[..=i].join("/");
            if create {
                match rfs::mkdirat(cur.as_fd(), *c, Mode::from(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            cur = open_subdir(cur.as_fd(), c, &shown)?;
        }
        Ok(cur)
    }

    /// Resolve the parent directory of `path` and return it with the final
    /// name. The root itself has no parent: an empty path is refused.
    pub fn parent_of<'p>(
        &self,
        path: &'p str,
        create: bool,
    ) -> Result<(OwnedFd, &'p str), Refused> {
        let comps = components(path)?;
        let Some((name, dirs)) = comps.split_last() else {
            return Err(Refused::Hostile("the path names the root itself".into()));
        };
        Ok((self.open_dir(dirs, create)?, name))
    }

    /// What is at `path` (not following a final symlink).
    pub fn lstat(&self, path: &str) -> Result<(Found, Option<rfs::Stat>), Refused> {
        let comps = components(path)?;
        let Some((name, dirs)) = comps.split_last() else {
            let st = rfs::fstat(self.fd())?;
            return Ok((Found::Dir, Some(st)));
        };
        let dir = match self.open_dir(dirs, false) {
            Ok(d) => d,
            Err(Refused::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                return Ok((Found::Missing, None));
            }
            Err(e) => return Err(e),
        };
        Ok(lstat_at(dir.as_fd(), name)?)
    }

    /// Open the regular file at `path` for reading, refusing symlinks and
    /// special files.
    pub fn open_file(&self, path: &str) -> Result<File, Refused> {
        let (dir, name) = self.parent_of(path, false)?;
        let fd = rfs::openat(
            dir.as_fd(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::LOOP {
                Refused::Hostile(format!("{path:?} is a symlink"))
            } else {
                Refused::Io(e.into())
            }
        })?;
        let st = rfs::fstat(&fd)?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            return Err(Refused::Hostile(format!("{path:?} is not a regular file")));
        }
        Ok(File::from(fd))
    }

    /// Read the target of the symlink at `path`.
    pub fn read_link(&self, path: &str) -> Result<String, Refused> {
        let (dir, name) = self.parent_of(path, false)?;
        let t = rfs::readlinkat(dir.as_fd(), name, Vec::new())?;
        String::from_utf8(t.into_bytes())
            .map_err(|_| Refused::Hostile(format!("the target of symlink {path:?} is not UTF-8")))
    }
}

/// Metadata for an object written beneath the root.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

fn ids(m: &Meta) -> Result<(rfs::Uid, rfs::Gid), Refused> {
    let bad = |what: &str, v: u64| Refused::Hostile(format!("{what} {v} is out of range"));
    let uid = u32::try_from(m.uid)
        .ok()
        .filter(|u| *u != u32::MAX)
        .ok_or_else(|| bad("uid", m.uid))?;
    let gid = u32::try_from(m.gid)
        .ok()
        .filter(|g| *g != u32::MAX)
        .ok_or_else(|| bad("gid", m.gid))?;
    Ok((rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid)))
}

/// Ownership is best effort: without root (or for ids not mapped in a user
/// namespace) `chown` fails with `EPERM`/`EINVAL`, and files keep our ids.
fn tolerate_eperm(r: rustix::io::Result<()>) -> Result<(), Refused> {
    match r {
        Ok(()) | Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes entries beneath a [`Root`], replacing what is there (as layer
/// extraction does), caching the last parent directory it resolved.
pub struct Writer<'r> {
    root: &'r Root,
    cached: Option<(String, OwnedFd)>,
}

impl<'r> Writer<'r> {
    pub fn new(root: &'r Root) -> Self {
        Writer { root, cached: None }
    }

    /// The parent directory of `path` (created if missing) and the name.
    fn parent<'p>(&mut self, path: &'p str) -> Result<(BorrowedFd<'_>, &'p str), Refused> {
        let comps = components(path)?;
        let Some((name, dirs)) = comps.split_last() else {
            return Err(Refused::Hostile("the path names the root itself".into()));
        };
        let dir_key = dirs.join("/");
        let hit = matches!(&self.cached, Some((k, _)) if *k == dir_key);
        if !hit {
            let fd = self.root.open_dir(dirs, true)?;
            self.cached = Some((dir_key, fd));
        }
        let fd = self
            .cached
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("cached above");
        Ok((fd, name))
    }

    /// Remove whatever is at `name` in the cached parent (a replaced
    /// directory may be the cached parent of later paths: forget it).
    fn clear(&mut self, path: &str) -> Result<(), Refused> {
        let (dir, name) = self.parent(path)?;
        let (found, _) = lstat_at(dir, name)?;
        if found == Found::Missing {
            return Ok(());
        }
        remove_all_at(dir, name)?;
        self.cached = None;
        Ok(())
    }

    fn owner(&self, fd: BorrowedFd<'_>, m: &Meta) -> Result<(), Refused> {
        let (uid, gid) = ids(m)?;
        tolerate_eperm(rfs::fchown(fd, Some(uid), Some(gid)))?;
        // After chown: it clears setuid/setgid bits.
        rfs::fchmod(fd, Mode::from(m.mode & 0o7777))?;
        Ok(())
    }

    /// Create (or keep) a directory at `path` and set its metadata.
    pub fn dir(&mut self, path: &str, m: &Meta) -> Result<(), Refused> {
        let (dir, name) = self.parent(path)?;
        let (found, _) = lstat_at(dir, name)?;
        if found != Found::Dir && found != Found::Missing {
            self.clear(path)?;
        }
        let (dir, name) = self.parent(path)?;
        match rfs::mkdirat(dir, name, Mode::from(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = open_subdir(dir, name, path)?;
        self.owner(fd.as_fd(), m)
    }

    /// Write a regular file at `path` from `content`, replacing what is there.
    pub fn file(&mut self, path: &str, m: &Meta, content: &mut dyn Read) -> Result<u64, Refused> {
        self.clear(path)?;
        let (dir, name) = self.parent(path)?;
        let fd = rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from(0o600),
        )?;
        let mut f = File::from(fd);
        let n = io::copy(content, &mut f)?;
        self.owner(f.as_fd(), m)?;
        let t = rfs::Timespec {
            tv_sec: i64::try_from(m.mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        rfs::futimens(
            &f,
            &rfs::Timestamps {
                last_access: t,
                last_modification: t,
            },
        )?;
        Ok(n)
    }

    /// Create a symlink at `path` (the target is never resolved here).
    pub fn symlink(&mut self, path: &str, target: &str, m: &Meta) -> Result<(), Refused> {
        if target.is_empty() || target.contains('\0') {
            return Err(Refused::Hostile("empty or NUL symlink target".into()));
        }
        self.clear(path)?;
        let (uid, gid) = ids(m)?;
        let (dir, name) = self.parent(path)?;
        rfs::symlinkat(target, dir, name)?;
        tolerate_eperm(rfs::chownat(
            dir,
            name,
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        ))?;
        Ok(())
    }

    /// Create a hard link at `path` to `target` (both beneath the root).
    pub fn hardlink(&mut self, path: &str, target: &str) -> Result<(), Refused> {
        let (tdir, tname) = self.root.parent_of(target, false)?;
        let (found, _) = lstat_at(tdir.as_fd(), tname)?;
        match found {
            Found::Missing => {
                return Err(Refused::Hostile(format!(
                    "hard link target {target:?} does not exist"
                )));
            }
            Found::Dir => {
                return Err(Refused::Hostile(format!(
                    "hard link target {target:?} is a directory"
                )));
            }
            _ => {}
        }
        self.clear(path)?;
        let (dir, name) = self.parent(path)?;
        rfs::linkat(tdir.as_fd(), tname, dir, name, AtFlags::empty())?;
        Ok(())
    }

    /// Create a FIFO at `path`.
    pub fn fifo(&mut self, path: &str, m: &Meta) -> Result<(), Refused> {
        self.clear(path)?;
        let (dir, name) = self.parent(path)?;
        rfs::mkfifoat(dir, name, Mode::from(m.mode & 0o777))?;
        Ok(())
    }

    /// Remove `path` if present (an OCI whiteout).
    pub fn remove(&mut self, path: &str) -> Result<(), Refused> {
        self.clear(path)
    }

    /// Remove every child of the directory `path` (an opaque whiteout).
    pub fn clear_children(&mut self, path: &str) -> Result<(), Refused> {
        let comps = components(path)?;
        let dir = match self.root.open_dir(&comps, false) {
            Ok(d) => d,
            Err(Refused::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for child in list_dir(dir.as_fd())? {
            remove_all_at(dir.as_fd(), &child)?;
        }
        self.cached = None;
        Ok(())
    }
}
