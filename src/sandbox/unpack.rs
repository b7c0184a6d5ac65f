//! Filling the build root: layer blobs, then the context directory.
//!
//! Layers are unpacked bottom first with [`super::beneath::Writer`], which
//! resolves every path component by component beneath the root and never
//! follows or writes through a symlink. A layer entry below a symlink (e.g.
//! `evil -> /tmp/x` then `evil/pwned`) is refused, naming the layer and the
//! entry; `..` components are refused; a leading `/` or `./` is stripped.
//!
//! OCI whiteouts are honoured: `.wh.<name>` removes `<name>` from the lower
//! layers, `.wh..wh..opq` empties its directory (applied when met, which is
//! right for layers that list it before their own children of that
//! directory, as OCI recommends). Character and block devices are refused
//! (a build root gets its `/dev` from the runtime); FIFOs are created.
//!
//! The context directory is copied to `<root>/src` without following
//! symlinks on either side: a symlink in the context is copied as a symlink.
//! Owners become 0:0, mtimes `SOURCE_DATE_EPOCH`, and modes are normalized
//! (0755 for directories and for files with any execute bit, else 0644), so
//! neither the checkout's umask nor its timestamps reach the build.
//! [`context_digest`] hashes exactly what is copied.

use super::beneath::{Meta, Refused, Root, Writer};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// An unpack or copy failure: the entry and why.
#[derive(Debug)]
pub struct UnpackError {
    pub entry: String,
    pub reason: Refused,
}

fn fail(entry: &str, reason: Refused) -> UnpackError {
    UnpackError {
        entry: entry.to_string(),
        reason,
    }
}

fn io_fail(entry: &str, e: io::Error) -> UnpackError {
    fail(entry, Refused::Io(e))
}

/// Unpack one layer blob (gzip, zstd or plain tar) into `root`.
pub fn unpack_layer(root: &Root, blob: &Path) -> Result<usize, UnpackError> {
    unpack_layer_into(root, blob, &mut std::collections::BTreeSet::new())
}

/// [`unpack_layer`], adding every path written to `paths`.
pub fn unpack_layer_into(
    root: &Root,
    blob: &Path,
    paths: &mut std::collections::BTreeSet<String>,
) -> Result<usize, UnpackError> {
    let r = crate::layer::open_blob(blob).map_err(|e| io_fail("(blob)", e))?;
    let mut ar = tar::Archive::new(r);
    let mut w = Writer::new(root);
    let mut n = 0;
    let entries = ar.entries().map_err(|e| io_fail("(tar)", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_fail("(tar)", e))?;
        let raw_bytes = entry.path_bytes().into_owned();
        let raw = String::from_utf8(raw_bytes.clone()).map_err(|_| {
            fail(
                &String::from_utf8_lossy(&raw_bytes),
                Refused::Hostile("name is not valid UTF-8".into()),
            )
        })?;
        let comps = super::beneath::components(&raw).map_err(|r| fail(&raw, r))?;
        if comps.is_empty() {
            continue; // the root directory itself
        }
        let path = comps.join("/");
        let (parent, base) = match path.rsplit_once('/') {
            Some((p, b)) => (p, b),
            None => ("", path.as_str()),
        };
        // Whiteouts.
        if base == ".wh..wh..opq" {
            w.clear_children(parent).map_err(|r| fail(&raw, r))?;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let target = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            w.remove(&target).map_err(|r| fail(&raw, r))?;
            continue;
        }
        let h = entry.header();
        let meta = Meta {
            mode: h.mode().map_err(|e| io_fail(&raw, e))? & 0o7777,
            uid: h.uid().map_err(|e| io_fail(&raw, e))?,
            gid: h.gid().map_err(|e| io_fail(&raw, e))?,
            mtime: h.mtime().map_err(|e| io_fail(&raw, e))?,
        };
        let link = |entry: &tar::Entry<'_, _>| -> Result<String, UnpackError> {
            let l = entry
                .link_name_bytes()
                .ok_or_else(|| fail(&raw, Refused::Hostile("link without a target".into())))?;
            String::from_utf8(l.into_owned())
                .map_err(|_| fail(&raw, Refused::Hostile("link target is not UTF-8".into())))
        };
        let et = h.entry_type();
        match et {
            tar::EntryType::Directory => w.dir(&path, &meta),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                match w.file(&path, &meta, &mut entry) {
                    Ok(got) if got != size => {
                        Err(Refused::Hostile("truncated file content".into()))
                    }
                    other => other.map(|_| ()),
                }
            }
            tar::EntryType::Symlink => {
                let t = link(&entry)?;
                w.symlink(&path, &t, &meta)
            }
            tar::EntryType::Link => {
                let t = link(&entry)?;
                let tc = super::beneath::components(&t)
                    .map_err(|r| fail(&raw, r))?
                    .join("/");
                w.hardlink(&path, &tc)
            }
            tar::EntryType::Fifo => w.fifo(&path, &meta),
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => Err(Refused::Hostile(format!(
                "unsupported entry type {other:?} (device nodes and sparse files are not unpacked into a build root)"
            ))),
        }
        .map_err(|r| fail(&raw, r))?;
        paths.insert(path);
        n += 1;
    }
    Ok(n)
}

/// The mode a context entry gets in the build root.
fn context_mode(is_dir: bool, host_mode: u32) -> u32 {
    if is_dir || host_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// One context entry, in walk order (sorted by file name at every level).
pub(super) enum CtxEntry {
    Dir {
        rel: String,
        mode: u32,
    },
    File {
        rel: String,
        mode: u32,
        path: std::path::PathBuf,
    },
    Symlink {
        rel: String,
        target: String,
    },
}

pub(super) fn walk_context(dir: &Path) -> Result<Vec<CtxEntry>, UnpackError> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
    {
        let e = e.map_err(|e| {
            let p = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            io_fail(&p, e.into())
        })?;
        let rel_path = e
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays under its root");
        let rel = rel_path
            .to_str()
            .ok_or_else(|| {
                fail(
                    &rel_path.display().to_string(),
                    Refused::Hostile("file name is not UTF-8".into()),
                )
            })?
            .to_string();
        let ft = e.file_type();
        let md = e
            .path()
            .symlink_metadata()
            .map_err(|err| io_fail(&rel, err))?;
        if ft.is_dir() {
            out.push(CtxEntry::Dir {
                mode: context_mode(true, md.permissions().mode()),
                rel,
            });
        } else if ft.is_file() {
            out.push(CtxEntry::File {
                mode: context_mode(false, md.permissions().mode()),
                path: e.path().to_path_buf(),
                rel,
            });
        } else if ft.is_symlink() {
            let t = std::fs::read_link(e.path()).map_err(|err| io_fail(&rel, err))?;
            let target = t
                .to_str()
                .ok_or_else(|| fail(&rel, Refused::Hostile("symlink target is not UTF-8".into())))?
                .to_string();
            out.push(CtxEntry::Symlink { rel, target });
        } else {
            return Err(fail(
                &rel,
                Refused::Hostile(
                    "sockets, FIFOs and device files cannot be part of a build context".into(),
                ),
            ));
        }
    }
    Ok(out)
}

/// A deterministic digest of the context tree: paths, normalized modes,
/// symlink targets and file contents, in sorted order.
pub fn context_digest(dir: &Path) -> Result<String, UnpackError> {
    let mut h = Sha256::new();
    h.update(b"imgforge-context-v1\0");
    for e in walk_context(dir)? {
        match e {
            CtxEntry::Dir { rel, mode } => {
                h.update(format!("D\0{rel}\0{mode:o}\0").as_bytes());
            }
            CtxEntry::File { rel, mode, path } => {
                let (sha, size) =
                    crate::digest::sha256_file(&path).map_err(|err| io_fail(&rel, err))?;
                h.update(format!("F\0{rel}\0{mode:o}\0{size}\0{sha}\0").as_bytes());
            }
            CtxEntry::Symlink { rel, target } => {
                h.update(format!("L\0{rel}\0{target}\0").as_bytes());
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Copy the context directory to `dest` (a root-relative dir, e.g. `src`).
pub fn copy_context(root: &Root, dir: &Path, dest: &str, mtime: u64) -> Result<(), UnpackError> {
    let mut w = Writer::new(root);
    let meta = |mode| Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime,
    };
    for e in walk_context(dir)? {
        match e {
            CtxEntry::Dir { rel, mode } => {
                w.dir(&format!("{dest}/{rel}"), &meta(mode))
                    .map_err(|r| fail(&rel, r))?;
            }
            CtxEntry::File { rel, mode, path } => {
                // Never follow a symlink swapped in since the walk.
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(|err| io_fail(&rel, err))?;
                w.file(
                    &format!("{dest}/{rel}"),
                    &meta(mode),
                    &mut f as &mut dyn Read,
                )
                .map_err(|r| fail(&rel, r))?;
            }
            CtxEntry::Symlink { rel, target } => {
                w.symlink(&format!("{dest}/{rel}"), &target, &meta(0o777))
                    .map_err(|r| fail(&rel, r))?;
            }
        }
    }
    Ok(())
}
