//! Turning one `.deb` into layer entries, without dpkg.
//!
//! The package's `data.tar` is streamed once: metadata becomes [`Entry`]
//! values, regular file contents are appended to a spool file (read back in
//! sorted order by [`super::write_layer`]). Hostile entries are rejected
//! here, with the package and entry named:
//!
//! * `..` components, control characters (NUL, newline...), non-UTF-8
//!   names and link targets: rejected;
//! * a leading `/`: normalized (stripped), as tar does;
//! * device nodes, FIFOs, sockets: rejected (no package in a container
//!   image needs them; dpkg-built images create none);
//! * two entries with the same path after normalization: rejected;
//! * hard links to paths outside the package: rejected;
//! * entries below a symlink: rejected by [`super::normalize`].
//!
//! With merged-/usr, `bin`, `sbin`, `lib` and `lib64` paths move under `usr/`
//! (the base layer holds the `bin -> usr/bin` links), and the package's
//! dpkg metadata is added as `var/lib/dpkg/status.d/<pkg>` and
//! `var/lib/dpkg/status.d/<pkg>.md5sums`, the layout scanners read in
//! distroless images.

use super::{Content, Entry, Kind, LayerError};
use crate::deb::{self, ControlInfo, Limits};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

/// Top-level directories that merged-/usr turns into symlinks.
pub const MERGED_USR_DIRS: [&str; 4] = ["bin", "lib", "lib64", "sbin"];

/// The merged-/usr symlinks and their target directories, for a base layer.
pub fn merged_usr_entries(mtime: u64) -> Vec<Entry> {
    let mut v = vec![Entry::dir("usr", mtime, "merged-usr")];
    for d in MERGED_USR_DIRS {
        v.push(Entry::symlink(d, &format!("usr/{d}"), mtime, "merged-usr"));
        v.push(Entry::dir(&format!("usr/{d}"), mtime, "merged-usr"));
    }
    v
}

/// Move a path under `usr/` when it starts in a merged directory.
/// Returns `None` for the merged directory itself (the base has the link).
pub fn merge_usr(path: &str) -> Option<String> {
    let first = path.split('/').next().unwrap_or(path);
    if MERGED_USR_DIRS.contains(&first) {
        if path == first {
            None
        } else {
            Some(format!("usr/{path}"))
        }
    } else {
        Some(path.to_string())
    }
}

/// A package to put into a layer.
#[derive(Debug, Clone)]
pub struct PackageInput {
    pub name: String,
    pub deb: std::path::PathBuf,
    pub control: ControlInfo,
}

/// Options for [`package_entries`].
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// Clamp for mtimes; generated entries get this value.
    pub source_date_epoch: u64,
    /// Apply the merged-/usr layout.
    pub merged_usr: bool,
    /// Write `var/lib/dpkg/status.d` metadata.
    pub dpkg_metadata: bool,
    pub limits: Limits,
}

/// Read a package's `data.tar` into entries, spooling contents into a
/// temporary file in `spool_dir`.
pub fn package_entries(
    pkg: &PackageInput,
    spool_dir: &Path,
    opts: &PackageOptions,
) -> Result<Vec<Entry>, LayerError> {
    let origin = format!("package {} ({})", pkg.name, pkg.deb.display());
    let spool = tempfile::tempfile_in(spool_dir).map_err(|source| LayerError::Io {
        path: spool_dir.to_path_buf(),
        source,
    })?;
    let spool_read = Arc::new(spool.try_clone().map_err(|source| LayerError::Io {
        path: spool_dir.to_path_buf(),
        source,
    })?);
    let mut writer = BufWriter::with_capacity(1 << 20, spool);
    let mut offset = 0u64;
    let sde = opts.source_date_epoch;
    let hostile = |entry: &str, reason: String| LayerError::Hostile {
        origin: origin.clone(),
        entry: entry.to_string(),
        reason,
    };

    let mut entries = deb::with_data_tar(&pkg.deb, &opts.limits, |dt| {
        let mut out: Vec<Entry> = Vec::new();
        let mut seen = BTreeSet::new();
        let iter = dt.archive.entries().map_err(|e| dt.ctx.error(e))?;
        for entry in iter {
            let mut entry = entry.map_err(|e| dt.ctx.error(e))?;
            let raw_bytes = entry.path_bytes().into_owned();
            let raw = String::from_utf8(raw_bytes.clone()).map_err(|_| LayerError::Hostile {
                origin: origin.clone(),
                entry: String::from_utf8_lossy(&raw_bytes).into_owned(),
                reason: "name is not valid UTF-8".into(),
            })?;
            if raw.chars().any(char::is_control) {
                return Err(hostile(
                    &raw,
                    "name contains a control character (NUL, newline, escape...)".into(),
                ));
            }
            let stripped = raw.strip_prefix("./").unwrap_or(&raw);
            if stripped.is_empty() || stripped == "." || stripped == "/" {
                continue; // the root directory itself
            }
            let path = super::normalize_path(stripped).map_err(|r| hostile(&raw, r))?;
            if !seen.insert(path.clone()) {
                return Err(hostile(
                    &raw,
                    format!("a second entry for {path:?} (names collide after normalization)"),
                ));
            }
            // Merged-/usr: `lib/x` and `usr/lib/x` may both exist; identical
            // directories merge, anything else is a conflict in `normalize`.
            let Some(path) = (if opts.merged_usr {
                merge_usr(&path)
            } else {
                Some(path)
            }) else {
                continue;
            };
            let h = entry.header();
            let mode = h.mode().map_err(|e| dt.ctx.error(e))?;
            let uid = h.uid().map_err(|e| dt.ctx.error(e))?;
            let gid = h.gid().map_err(|e| dt.ctx.error(e))?;
            let mtime = h.mtime().map_err(|e| dt.ctx.error(e))?.min(sde);
            let uname = h
                .username()
                .ok()
                .flatten()
                .unwrap_or(if uid == 0 { "root" } else { "" })
                .to_string();
            let gname = h
                .groupname()
                .ok()
                .flatten()
                .unwrap_or(if gid == 0 { "root" } else { "" })
                .to_string();
            let etype = h.entry_type();
            let link = || -> Result<String, LayerError> {
                let l = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile(&raw, "link without a target".into()))?;
                let t = String::from_utf8(l.into_owned())
                    .map_err(|_| hostile(&raw, "link target is not valid UTF-8".into()))?;
                if t.chars().any(char::is_control) {
                    return Err(hostile(
                        &raw,
                        format!("link target {t:?} contains a control character"),
                    ));
                }
                Ok(t)
            };
            let mut e = Entry {
                path: path.clone(),
                kind: Kind::Dir,
                mode: mode & 0o7777,
                uid,
                gid,
                uname,
                gname,
                mtime,
                size: 0,
                content: Content::None,
                sha256: None,
                origin: pkg.name.clone(),
            };
            match etype {
                tar::EntryType::Directory => {}
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let size = entry.size();
                    let mut hasher = HashingCopy::new(&mut writer);
                    let n = io::copy(&mut entry, &mut hasher).map_err(|e| dt.ctx.error(e))?;
                    if n != size {
                        return Err(hostile(&raw, "truncated file content".into()));
                    }
                    e.kind = Kind::File;
                    e.size = size;
                    e.sha256 = Some(hasher.finish());
                    e.content = Content::Spool {
                        file: spool_read.clone(),
                        offset,
                    };
                    offset += size;
                }
                tar::EntryType::Symlink => {
                    let t = link()?;
                    if t.is_empty() || t.contains('\0') {
                        return Err(hostile(&raw, "empty symlink target".into()));
                    }
                    e.kind = Kind::Symlink(t);
                    e.mode = 0o777;
                }
                tar::EntryType::Link => {
                    let t = link()?;
                    let t = super::normalize_path(t.strip_prefix("./").unwrap_or(&t))
                        .map_err(|r| hostile(&raw, format!("hard link target: {r}")))?;
                    let t = if opts.merged_usr {
                        merge_usr(&t)
                            .ok_or_else(|| hostile(&raw, "hard link to a directory".into()))?
                    } else {
                        t
                    };
                    e.kind = Kind::Hardlink(t);
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    return Err(hostile(
                        &raw,
                        format!("{etype:?} device nodes and FIFOs are not allowed in image layers"),
                    ));
                }
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
                other => {
                    return Err(hostile(
                        &raw,
                        format!("unsupported tar entry type {other:?}"),
                    ));
                }
            }
            out.push(e);
        }
        // Hard links must stay inside this package. `normalize` only checks
        // that the target is somewhere in the layer, so without this a
        // package could link to (and own, share modes with) a file another
        // package of the same layer ships, which the README rejects.
        let own: BTreeSet<&str> = out.iter().map(|e| e.path.as_str()).collect();
        for e in &out {
            if let Kind::Hardlink(t) = &e.kind
                && !own.contains(t.as_str())
            {
                return Err(hostile(
                    &e.path,
                    format!("hard link to {t:?}, a path outside the package"),
                ));
            }
        }
        Ok(out)
    })?;
    writer.flush().map_err(|source| LayerError::Io {
        path: spool_dir.to_path_buf(),
        source,
    })?;
    drop(writer);

    if opts.dpkg_metadata {
        let dir = "var/lib/dpkg/status.d";
        // Rendered from validated fields (`deb::control`); a `Status` field
        // of the package was dropped there.
        let mut status = pkg.control.stanza.clone();
        status.push_str("\nStatus: install ok installed\n");
        entries.push(Entry::bytes(
            &format!("{dir}/{}", pkg.name),
            status.into_bytes(),
            0o644,
            sde,
            &pkg.name,
        ));
        if let Some(md5) = &pkg.control.md5sums {
            entries.push(Entry::bytes(
                &format!("{dir}/{}.md5sums", pkg.name),
                md5.clone().into_bytes(),
                0o644,
                sde,
                &pkg.name,
            ));
        }
    }
    Ok(entries)
}

/// A writer that hashes what it copies.
struct HashingCopy<'a, W: Write> {
    inner: &'a mut W,
    hasher: Sha256,
}

impl<'a, W: Write> HashingCopy<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        HashingCopy {
            inner,
            hasher: Sha256::new(),
        }
    }
    fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl<W: Write> Write for HashingCopy<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
