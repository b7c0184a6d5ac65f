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
//! * two entries with the same path after normalization: rejected (by
//!   [`package_entries`], or when a spool is written for [`spool_package`]);
//! * hard links to paths outside the package: rejected (likewise);
//! * entries below a symlink: rejected by [`super::normalize`].
//!
//! With merged-/usr, `bin`, `sbin`, `lib` and `lib64` paths move under `usr/`
//! (the base layer holds the `bin -> usr/bin` links), and the package's
//! dpkg metadata is added as `var/lib/dpkg/status.d/<pkg>` and
//! `var/lib/dpkg/status.d/<pkg>.md5sums`, the layout scanners read in
//! distroless images.

use super::spool::Raw;
use super::{Content, Entry, EntrySpool, Kind, LayerError};
use crate::deb::{self, ControlInfo, Limits};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

/// Top-level directories that merged-/usr turns into symlinks.
pub const MERGED_USR_DIRS: [&str; 4] = ["bin", "lib", "lib64", "sbin"];

/// The top-level directories that are merged-/usr symlinks in a root of
/// Debian architecture `arch`, as debootstrap makes them: `lib64` only
/// where that architecture's libc6 ships `/lib64` (the dynamic loader of
/// amd64, ppc64el, mips64el, loong64). Elsewhere (arm64...) a `/lib64`
/// link no package owns is removed by usr-is-merged's postinst.
pub fn merged_usr_dirs(arch: &str) -> &'static [&'static str] {
    match arch {
        "amd64" | "ppc64el" | "mips64el" | "loong64" => &MERGED_USR_DIRS,
        _ => &["bin", "lib", "sbin"],
    }
}

/// The merged-/usr symlinks and their target directories, for a base layer
/// of Debian architecture `arch` (see [`merged_usr_dirs`]).
pub fn merged_usr_entries(arch: &str, mtime: u64) -> Vec<Entry> {
    let mut v = vec![Entry::dir("usr", mtime, "merged-usr")];
    for d in merged_usr_dirs(arch) {
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

/// A package to put into a layer, borrowed (its `md5sums` may be tens of
/// MB: not copied).
#[derive(Debug, Clone, Copy)]
pub struct PackageRef<'a> {
    pub name: &'a str,
    pub deb: &'a Path,
    pub control: &'a ControlInfo,
}

impl PackageInput {
    /// The borrowed form.
    pub fn as_ref(&self) -> PackageRef<'_> {
        PackageRef {
            name: &self.name,
            deb: &self.deb,
            control: &self.control,
        }
    }
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

/// One entry read from a package, with how its `data.tar` named it.
pub(crate) enum Read<'a> {
    /// From `data.tar`: `raw` as written there, `pre` normalized (before
    /// merged-/usr), `merged` if merged-/usr moved it.
    Data {
        e: Entry,
        raw: &'a str,
        pre: &'a str,
        merged: bool,
    },
    /// Generated dpkg metadata.
    Meta(Entry),
}

/// Read a package's `data.tar` into entries, spooling contents into a
/// temporary file in `spool_dir`.
pub fn package_entries(
    pkg: &PackageInput,
    spool_dir: &Path,
    opts: &PackageOptions,
) -> Result<Vec<Entry>, LayerError> {
    package_entries_of(pkg.as_ref(), spool_dir, opts)
}

/// The paths `pkg` installs, named as its layer entries are (dpkg metadata
/// included), without reading file contents: what maintainer scripts see
/// through `dpkg -L` and what file triggers match. The package's layer was
/// written (and its entries checked) before anything asks for this.
pub fn package_paths(pkg: PackageRef, opts: &PackageOptions) -> Result<Vec<String>, LayerError> {
    let origin = package_origin(pkg);
    let mut out = Vec::new();
    deb::with_data_tar(pkg.deb, &opts.limits, |dt| {
        for entry in dt.archive.entries().map_err(|e| dt.ctx.error(e))? {
            let entry = entry.map_err(|e| dt.ctx.error(e))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let stripped = raw.strip_prefix("./").unwrap_or(&raw);
            if stripped.is_empty() || stripped == "." || stripped == "/" {
                continue;
            }
            let pre = super::normalize_path(stripped).map_err(|reason| LayerError::Hostile {
                origin: origin.clone(),
                entry: raw.clone(),
                reason,
            })?;
            out.extend(if opts.merged_usr {
                merge_usr(&pre)
            } else {
                Some(pre)
            });
        }
        Ok::<(), LayerError>(())
    })?;
    if opts.dpkg_metadata {
        out.push(format!("var/lib/dpkg/status.d/{}", pkg.name));
        if pkg.control.md5sums.is_some() {
            out.push(format!("var/lib/dpkg/status.d/{}.md5sums", pkg.name));
        }
    }
    Ok(out)
}

/// [`package_entries`] of a borrowed package.
pub fn package_entries_of(
    pkg: PackageRef,
    spool_dir: &Path,
    opts: &PackageOptions,
) -> Result<Vec<Entry>, LayerError> {
    let origin = package_origin(pkg);
    let mut out: Vec<Entry> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut meta = Vec::new();
    read_package(pkg, spool_dir, opts, &mut |r| {
        match r {
            Read::Data { e, raw, pre, .. } => {
                if !seen.insert(pre.to_string()) {
                    return Err(collision(&origin, raw, pre));
                }
                out.push(e);
            }
            Read::Meta(e) => meta.push(e),
        }
        Ok(())
    })?;
    // Hard links must stay inside this package. `normalize` only checks
    // that the target is somewhere in the layer, so without this a
    // package could link to (and own, share modes with) a file another
    // package of the same layer ships, which the README rejects.
    let own: BTreeSet<&str> = out.iter().map(|e| e.path.as_str()).collect();
    for e in &out {
        if let Kind::Hardlink(t) = &e.kind
            && !own.contains(t.as_str())
        {
            return Err(LayerError::Hostile {
                origin: origin.clone(),
                entry: e.path.clone(),
                reason: format!("hard link to {t:?}, a path outside the package"),
            });
        }
    }
    out.extend(meta);
    Ok(out)
}

/// Read a package into `spool`, entry by entry: memory does not grow with
/// its number of entries. The checks of [`package_entries`] (a path twice,
/// hard links out of the package) happen when the spool is written.
pub fn spool_package(
    spool: &mut EntrySpool,
    pkg: PackageRef,
    spool_dir: &Path,
    opts: &PackageOptions,
) -> Result<(), LayerError> {
    let data = spool.add_source(pkg.name.to_string(), Some(package_origin(pkg)));
    // Generated entries may meet a shipped one of the same path: the
    // conflict rules of `normalize` apply, not the collision rule.
    let meta = spool.add_source(pkg.name.to_string(), None);
    read_package(pkg, spool_dir, opts, &mut |r| match r {
        Read::Data {
            e,
            raw,
            pre,
            merged,
        } => {
            let raw = if raw.strip_prefix("./") == Some(pre) {
                Raw::Dot
            } else if raw.strip_prefix("./").and_then(|r| r.strip_suffix('/')) == Some(pre) {
                Raw::DotSlash
            } else {
                Raw::Other(raw.to_string())
            };
            spool.push_with(e, data, merged, raw)
        }
        Read::Meta(e) => spool.push_with(e, meta, false, Raw::Dot),
    })
}

/// How errors name a package.
fn package_origin(pkg: PackageRef) -> String {
    format!("package {} ({})", pkg.name, pkg.deb.display())
}

/// A path shipped twice by one package.
pub(crate) fn collision(origin: &str, raw: &str, path: &str) -> LayerError {
    LayerError::Hostile {
        origin: origin.to_string(),
        entry: raw.to_string(),
        reason: format!("a second entry for {path:?} (names collide after normalization)"),
    }
}

/// A package being read: its contents spool and how errors name it.
struct Reader<'a> {
    origin: String,
    name: &'a str,
    opts: &'a PackageOptions,
    writer: BufWriter<std::fs::File>,
    spool_read: Arc<std::fs::File>,
    /// Where the spool lives (named when writing to it fails).
    spool_dir: &'a Path,
    offset: u64,
    /// Merged-/usr directories seen (dropped, but still unique).
    roots: BTreeSet<String>,
}

/// Stream a package's entries into `sink`: `data.tar` first, then the
/// dpkg metadata.
fn read_package(
    pkg: PackageRef,
    spool_dir: &Path,
    opts: &PackageOptions,
    sink: &mut dyn FnMut(Read) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let io_err = |source| LayerError::Io {
        path: spool_dir.to_path_buf(),
        source,
    };
    let spool = tempfile::tempfile_in(spool_dir).map_err(io_err)?;
    let spool_read = Arc::new(spool.try_clone().map_err(io_err)?);
    let mut r = Reader {
        origin: package_origin(pkg),
        name: pkg.name,
        opts,
        writer: BufWriter::with_capacity(1 << 20, spool),
        spool_read,
        spool_dir,
        offset: 0,
        roots: BTreeSet::new(),
    };
    deb::with_data_tar(pkg.deb, &opts.limits, |dt| {
        let iter = dt.archive.entries().map_err(|e| dt.ctx.error(e))?;
        for entry in iter {
            let mut entry = entry.map_err(|e| dt.ctx.error(e))?;
            r.entry(&mut entry, &dt.ctx, sink)?;
        }
        Ok::<(), LayerError>(())
    })?;
    if opts.dpkg_metadata {
        let dir = "var/lib/dpkg/status.d";
        // Rendered from validated fields (`deb::control`); a `Status` field
        // of the package was dropped there.
        let mut status = pkg.control.stanza.clone();
        status.push_str("\nStatus: install ok installed\n");
        let e = r.spooled(&format!("{dir}/{}", pkg.name), status.as_bytes())?;
        sink(Read::Meta(e))?;
        if let Some(md5) = &pkg.control.md5sums {
            let e = r.spooled(&format!("{dir}/{}.md5sums", pkg.name), md5.as_bytes())?;
            sink(Read::Meta(e))?;
        }
    }
    r.writer.flush().map_err(io_err)
}

impl Reader<'_> {
    fn hostile(&self, entry: &str, reason: String) -> LayerError {
        LayerError::Hostile {
            origin: self.origin.clone(),
            entry: entry.to_string(),
            reason,
        }
    }

    /// Generated metadata: its bytes go to the spool, not to memory.
    fn spooled(&mut self, path: &str, data: &[u8]) -> Result<Entry, LayerError> {
        self.writer
            .write_all(data)
            .map_err(|source| LayerError::Io {
                path: path.into(),
                source,
            })?;
        let sde = self.opts.source_date_epoch;
        let mut e = Entry::dir(path, sde, self.name);
        e.kind = Kind::File;
        e.mode = 0o644;
        e.size = data.len() as u64;
        e.sha256 = Some(Sha256::digest(data).into());
        e.content = Content::Spool {
            file: self.spool_read.clone(),
            offset: self.offset,
        };
        self.offset += e.size;
        Ok(e)
    }

    /// One `data.tar` entry: checked, its content spooled, handed to `sink`.
    fn entry(
        &mut self,
        entry: &mut tar::Entry<'_, &mut dyn io::Read>,
        ctx: &deb::MemberCtx,
        sink: &mut dyn FnMut(Read) -> Result<(), LayerError>,
    ) -> Result<(), LayerError> {
        let raw_bytes = entry.path_bytes().into_owned();
        let raw = String::from_utf8(raw_bytes.clone()).map_err(|_| {
            let lossy = String::from_utf8_lossy(&raw_bytes);
            self.hostile(&lossy, "name is not valid UTF-8".into())
        })?;
        if raw.chars().any(char::is_control) {
            return Err(self.hostile(
                &raw,
                "name contains a control character (NUL, newline, escape...)".into(),
            ));
        }
        let stripped = raw.strip_prefix("./").unwrap_or(&raw);
        if stripped.is_empty() || stripped == "." || stripped == "/" {
            return Ok(()); // the root directory itself
        }
        let pre = super::normalize_path(stripped).map_err(|r| self.hostile(&raw, r))?;
        // Merged-/usr: `lib/x` and `usr/lib/x` may both exist; identical
        // directories merge, anything else is a conflict in `normalize`.
        let path = if self.opts.merged_usr {
            merge_usr(&pre)
        } else {
            Some(pre.clone())
        };
        let Some(path) = path else {
            if !self.roots.insert(pre.clone()) {
                return Err(collision(&self.origin, &raw, &pre));
            }
            return Ok(());
        };
        let merged = path != pre;
        let Some(e) = self.entry_of(entry, ctx, &raw, path)? else {
            return Ok(());
        };
        sink(Read::Data {
            e,
            raw: &raw,
            pre: &pre,
            merged,
        })
    }

    /// The [`Entry`] of a `data.tar` entry (`None` for PAX headers).
    fn entry_of(
        &mut self,
        entry: &mut tar::Entry<'_, &mut dyn io::Read>,
        ctx: &deb::MemberCtx,
        raw: &str,
        path: String,
    ) -> Result<Option<Entry>, LayerError> {
        let h = entry.header();
        let mode = h.mode().map_err(|e| ctx.error(e))?;
        let uid = h.uid().map_err(|e| ctx.error(e))?;
        let gid = h.gid().map_err(|e| ctx.error(e))?;
        let mtime = h
            .mtime()
            .map_err(|e| ctx.error(e))?
            .min(self.opts.source_date_epoch);
        let name =
            |n: Option<&str>, id: u64| n.unwrap_or(if id == 0 { "root" } else { "" }).to_string();
        let uname = name(h.username().ok().flatten(), uid);
        let gname = name(h.groupname().ok().flatten(), gid);
        let etype = h.entry_type();
        let mut e = Entry {
            path,
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
            origin: self.name.to_string(),
        };
        match etype {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file_content(entry, ctx, raw, &mut e)?;
            }
            tar::EntryType::Symlink => {
                let t = self.link(entry, raw)?;
                if t.is_empty() || t.contains('\0') {
                    return Err(self.hostile(raw, "empty symlink target".into()));
                }
                e.kind = Kind::Symlink(t);
                e.mode = 0o777;
            }
            tar::EntryType::Link => e.kind = Kind::Hardlink(self.hardlink_target(entry, raw)?),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(self.hostile(
                    raw,
                    format!("{etype:?} device nodes and FIFOs are not allowed in image layers"),
                ));
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(None),
            other => {
                return Err(self.hostile(raw, format!("unsupported tar entry type {other:?}")));
            }
        }
        Ok(Some(e))
    }

    /// Copy a regular file's bytes to the spool, hashing them.
    fn file_content(
        &mut self,
        entry: &mut tar::Entry<'_, &mut dyn io::Read>,
        ctx: &deb::MemberCtx,
        raw: &str,
        e: &mut Entry,
    ) -> Result<(), LayerError> {
        let size = entry.size();
        let mut hasher = HashingCopy::new(&mut self.writer);
        let n = match io::copy(entry, &mut hasher) {
            Ok(n) => n,
            // Writing the spool failed (a full disk): not the package's fault.
            Err(source) if hasher.write_failed => {
                return Err(LayerError::Io {
                    path: self.spool_dir.to_path_buf(),
                    source,
                });
            }
            Err(e) => return Err(ctx.error(e).into()),
        };
        if n != size {
            return Err(self.hostile(raw, "truncated file content".into()));
        }
        e.kind = Kind::File;
        e.size = size;
        e.sha256 = Some(hasher.finish());
        e.content = Content::Spool {
            file: self.spool_read.clone(),
            offset: self.offset,
        };
        self.offset += size;
        Ok(())
    }

    /// A link's target: UTF-8, no control characters.
    fn link(
        &self,
        entry: &tar::Entry<'_, &mut dyn io::Read>,
        raw: &str,
    ) -> Result<String, LayerError> {
        let l = entry
            .link_name_bytes()
            .ok_or_else(|| self.hostile(raw, "link without a target".into()))?;
        let t = String::from_utf8(l.into_owned())
            .map_err(|_| self.hostile(raw, "link target is not valid UTF-8".into()))?;
        if t.chars().any(char::is_control) {
            return Err(self.hostile(
                raw,
                format!("link target {t:?} contains a control character"),
            ));
        }
        Ok(t)
    }

    /// A hard link's target, normalized like entry paths.
    fn hardlink_target(
        &self,
        entry: &tar::Entry<'_, &mut dyn io::Read>,
        raw: &str,
    ) -> Result<String, LayerError> {
        let t = self.link(entry, raw)?;
        let t = super::normalize_path(t.strip_prefix("./").unwrap_or(&t))
            .map_err(|r| self.hostile(raw, format!("hard link target: {r}")))?;
        if self.opts.merged_usr {
            merge_usr(&t).ok_or_else(|| self.hostile(raw, "hard link to a directory".into()))
        } else {
            Ok(t)
        }
    }
}

/// A writer that hashes what it copies.
struct HashingCopy<'a, W: Write> {
    inner: &'a mut W,
    hasher: Sha256,
    /// A write failed: an error of the copy is the writer's, not the reader's.
    write_failed: bool,
}

impl<'a, W: Write> HashingCopy<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        HashingCopy {
            inner,
            hasher: Sha256::new(),
            write_failed: false,
        }
    }
    fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl<W: Write> Write for HashingCopy<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .inner
            .write(buf)
            .inspect_err(|_| self.write_failed = true)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.write_failed = true)
    }
}
