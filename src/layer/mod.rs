//! Stage 3: deterministic layer tars.
//!
//! A layer is a list of [`Entry`] values (from packages, recipe files or
//! build artifacts) that [`normalize`] sorts, checks and completes, and
//! [`write_layer`] streams into a compressed blob, hashing the uncompressed
//! tar (the `diff_id`) and the stored bytes (the digest) in the same pass.
//!
//! What is pinned, so the bytes never depend on the host:
//! * entry order: sorted by path components, parents before children;
//! * mtimes: clamped to `SOURCE_DATE_EPOCH` (generated entries get it);
//! * owners: numeric uid/gid as the package ships them, names as shipped;
//! * modes: exactly as shipped (setuid, sticky and 0600 kept), never umask;
//! * no atime/ctime, no xattrs, no sparse entries, GNU long names;
//! * gzip: flate2 pinned in Cargo.lock; its backend is zlib-rs, enabled by
//!   the `pgp` dependency through feature unification,
//!   header mtime 0, OS byte 255, no file name.
//!
//! Package contents are spooled to a temporary file per package
//! ([`package`]), and a package layer's entries to an [`EntrySpool`]: sorted
//! on disk in bounded runs ([`spool`]), then merged and normalized as one
//! stream (`stream`) while the tar is written ([`write_spooled`]), so memory
//! does not grow with the number of entries. [`normalize`] applies the same
//! stream rules to small layers held in memory.

pub mod index;
pub mod package;
pub mod spool;
mod stream;
#[cfg(test)]
mod tests_stream;

pub use spool::EntrySpool;

use crate::digest::HashWriter;
use spool::{Item, Link, Meta, Raw, Source, cmp_paths};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stream::{Emit, Sorted};

/// Errors while building a layer. Each names the package (or source) and entry.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error(
        "{origin}: entry {entry:?} rejected: {reason}\nhelp: the package is malformed or hostile; imgforge never writes outside the layer being built. Remove it from the recipe or fetch a genuine copy"
    )]
    Hostile {
        origin: String,
        entry: String,
        reason: String,
    },
    #[error(
        "{path:?} is shipped by both {first} and {second} with different {what}\nhelp: two packages may only ship the same path with identical content; drop one of them from the recipe"
    )]
    Conflict {
        path: String,
        first: String,
        second: String,
        what: String,
    },
    #[error(
        "writing layer {path}: {source}\nhelp: check free space and permissions of the file system that holds it"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The type of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink(String),
    /// A hard link to another path of the same layer.
    Hardlink(String),
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    None,
    /// A range of a spool file.
    Spool {
        file: Arc<File>,
        offset: u64,
    },
    /// A file on disk (recipe files, build artifacts).
    Path(PathBuf),
    /// Small generated content (dpkg metadata).
    Bytes(Arc<Vec<u8>>),
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative path, no leading `/`, no trailing `/`.
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
    pub mtime: u64,
    pub size: u64,
    pub content: Content,
    /// sha256 of the content, for regular files.
    pub sha256: Option<[u8; 32]>,
    /// What it came from (a package name, `recipe file`, `build artifact`).
    pub origin: String,
}

impl Entry {
    /// A generated directory, root-owned, 0755.
    pub fn dir(path: &str, mtime: u64, origin: &str) -> Entry {
        Entry {
            path: path.to_string(),
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            uname: "root".into(),
            gname: "root".into(),
            mtime,
            size: 0,
            content: Content::None,
            sha256: None,
            origin: origin.to_string(),
        }
    }
    /// A generated symlink.
    pub fn symlink(path: &str, target: &str, mtime: u64, origin: &str) -> Entry {
        Entry {
            kind: Kind::Symlink(target.to_string()),
            mode: 0o777,
            ..Entry::dir(path, mtime, origin)
        }
    }
    /// A generated regular file from bytes.
    pub fn bytes(path: &str, data: Vec<u8>, mode: u32, mtime: u64, origin: &str) -> Entry {
        let sha = sha_bytes(&data);
        Entry {
            kind: Kind::File,
            mode,
            size: data.len() as u64,
            content: Content::Bytes(Arc::new(data)),
            sha256: Some(sha),
            ..Entry::dir(path, mtime, origin)
        }
    }
    /// Open the entry's content.
    pub fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match &self.content {
            Content::None => Box::new(io::empty()),
            Content::Spool { file, offset } => Box::new(SpoolReader {
                file,
                pos: *offset,
                end: offset + self.size,
            }),
            Content::Path(p) => Box::new(File::open(p)?.take(self.size)),
            Content::Bytes(b) => Box::new(&b[..]),
        })
    }
}

fn sha_bytes(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

struct SpoolReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.end - self.pos) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(left);
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spool file shorter than recorded",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

/// Split a relative path into normalized components, rejecting `..`.
///
/// A leading `/` and `.` components are dropped (documented normalization);
/// `..` anywhere, NUL bytes and empty results are errors.
pub fn normalize_path(raw: &str) -> Result<String, String> {
    if raw.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("path contains a '..' component".into()),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err("empty path".into());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
/// Sort key: path components compared bytewise, so `a/b` sorts right after
/// `a` and before `a-b` (parents before children).
fn sort_key(p: &str) -> Vec<&[u8]> {
    p.split('/').map(|c| c.as_bytes()).collect()
}

/// Sort, deduplicate and complete a layer's entries.
///
/// * identical duplicates (same type, mode, owner, content) collapse into one;
///   different ones are a [`LayerError::Conflict`];
/// * missing parent directories are added (0755, root, `mtime`);
/// * an entry below a symlink of the same layer, or below one of
///   `lower_symlinks`, is rejected (it would be written through the link);
/// * hard links point at the first path (in sorted order) of their group.
///
/// In memory, for small layers; [`write_spooled`] applies the same rules
/// (the same code, [`stream`]) to entries sorted on disk.
pub fn normalize(
    entries: Vec<Entry>,
    lower_symlinks: &BTreeSet<String>,
    mtime: u64,
) -> Result<Vec<Entry>, LayerError> {
    let mut v = InMemory::default();
    let mut by_origin: BTreeMap<String, u32> = BTreeMap::new();
    for (i, e) in entries.into_iter().enumerate() {
        let src = *by_origin.entry(e.origin.clone()).or_insert_with(|| {
            v.sources.push(Source {
                origin: e.origin.clone(),
                package: None,
            });
            (v.sources.len() - 1) as u32
        });
        let seq = i as u64;
        if let Kind::Hardlink(t) = &e.kind {
            v.links.push(Link {
                path: e.path.clone(),
                target: t.clone(),
                src,
                seq,
            });
        }
        let m = Meta {
            src,
            merged: false,
            raw: Raw::Dot,
            seq,
        };
        v.items.push(Item { e, m });
    }
    // Stable: equal paths stay in arrival order.
    v.items
        .sort_by(|a, b| cmp_paths(a.e.path.as_bytes(), b.e.path.as_bytes()));
    let mut out = Vec::new();
    stream::normalize_sorted(&v, lower_symlinks, mtime, &mut |e| {
        out.push(e.clone());
        Ok(())
    })?;
    Ok(out)
}

/// A sorted stream held in memory.
#[derive(Default)]
struct InMemory {
    items: Vec<Item>,
    sources: Vec<Source>,
    links: Vec<Link>,
}

impl Sorted for InMemory {
    fn sources(&self) -> &[Source] {
        &self.sources
    }
    fn links(&self) -> &[Link] {
        &self.links
    }
    fn items(&self) -> Result<Box<dyn Iterator<Item = Result<Item, LayerError>> + '_>, LayerError> {
        Ok(Box::new(self.items.iter().cloned().map(Ok)))
    }
}

impl Sorted for EntrySpool {
    fn sources(&self) -> &[Source] {
        EntrySpool::sources(self)
    }
    fn links(&self) -> &[Link] {
        EntrySpool::links(self)
    }
    fn items(&self) -> Result<Box<dyn Iterator<Item = Result<Item, LayerError>> + '_>, LayerError> {
        Ok(Box::new(EntrySpool::items(self)?))
    }
}

fn difference(a: &Entry, b: &Entry) -> Option<String> {
    if a.kind != b.kind {
        return Some(format!(
            "types ({:?} vs {:?})",
            kind_name(&a.kind),
            kind_name(&b.kind)
        ));
    }
    if a.kind == Kind::Dir {
        // Directories shared by packages: permissions must agree.
        if a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
            return Some(format!(
                "directory permissions ({:o} {}:{} vs {:o} {}:{})",
                a.mode, a.uid, a.gid, b.mode, b.uid, b.gid
            ));
        }
        return None;
    }
    if a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
        return Some(format!(
            "permissions ({:o} {}:{} vs {:o} {}:{})",
            a.mode, a.uid, a.gid, b.mode, b.uid, b.gid
        ));
    }
    if a.kind == Kind::File && (a.size != b.size || a.sha256 != b.sha256) {
        return Some("content".into());
    }
    None
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Dir => "directory",
        Kind::File => "file",
        Kind::Symlink(_) => "symlink",
        Kind::Hardlink(_) => "hardlink",
    }
}

pub use crate::options::Compression;

/// A layer written to the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:<hex>` of the stored (compressed) bytes.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Stored size.
    pub size: u64,
    /// Uncompressed tar size.
    pub tar_size: u64,
    pub media_type: String,
    /// Number of entries.
    pub entries: usize,
}

/// Where and how [`write_layer`] writes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The `blobs/sha256` directory.
    pub blobs_dir: PathBuf,
    pub compression: Compression,
}

/// Stream normalized `entries` into a compressed blob in `blobs_dir`, named by
/// its digest. Memory use is bounded by the copy buffers.
pub fn write_layer(entries: &[Entry], opts: &WriteOptions) -> Result<LayerBlob, LayerError> {
    write_entries(opts, &mut |emit| {
        for e in entries {
            emit(e)?;
        }
        Ok(())
    })
}

/// Normalize the entries of `spool` (the rules of [`normalize`]) and write
/// them as a layer, in memory bounded whatever their number. Returns the
/// blob and the layer's symlinks, sorted. Nothing is left in `blobs_dir` on
/// failure.
///
/// With `index`, each written entry's line of the layer's path index
/// ([`index`]) goes there too.
pub fn write_spooled(
    mut spool: EntrySpool,
    lower_symlinks: &BTreeSet<String>,
    mtime: u64,
    opts: &WriteOptions,
    mut index: Option<&mut dyn Write>,
) -> Result<(LayerBlob, Vec<String>), LayerError> {
    spool.seal()?;
    let mut symlinks = Vec::new();
    let dir = opts.blobs_dir.clone();
    let blob = write_entries(opts, &mut |emit| {
        let mut indexed = |e: &Entry| {
            if let Some(w) = index.as_deref_mut() {
                index::write_record(w, e).map_err(|source| LayerError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            emit(e)
        };
        symlinks = stream::normalize_sorted(&spool, lower_symlinks, mtime, &mut indexed)?;
        Ok(())
    })?;
    Ok((blob, symlinks))
}

/// Feeds the entries of a layer, in order, to the tar writer.
type Feed<'a> = dyn FnMut(&mut Emit) -> Result<(), LayerError> + 'a;

/// Write what `feed` emits as a compressed blob in `blobs_dir`, named by its
/// digest; the temporary file is removed on failure.
fn write_entries(opts: &WriteOptions, feed: &mut Feed) -> Result<LayerBlob, LayerError> {
    let io_err = |source| LayerError::Io {
        path: opts.blobs_dir.clone(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".layer-")
        .tempfile_in(&opts.blobs_dir)
        .map_err(io_err)?;
    let file = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone().map_err(io_err)?);
    let blob = HashWriter::new(file);
    let dir = &opts.blobs_dir;
    let (blob, diff_id, tar_size, entries) = match opts.compression {
        Compression::Gzip(level) => {
            let gz = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(blob, flate2::Compression::new(level));
            let (gz, diff, n, count) = write_tar(feed, HashWriter::new(gz), dir)?;
            (gz.finish().map_err(io_err)?, diff, n, count)
        }
        Compression::Zstd(level) => {
            let mut z = zstd::stream::write::Encoder::new(blob, level).map_err(io_err)?;
            z.include_checksum(true).map_err(io_err)?;
            z.include_contentsize(false).map_err(io_err)?;
            let (z, diff, n, count) = write_tar(feed, HashWriter::new(z), dir)?;
            (z.finish().map_err(io_err)?, diff, n, count)
        }
    };
    let (mut file, digest, size) = blob.finish();
    file.flush().map_err(io_err)?;
    drop(file);
    let dest = opts.blobs_dir.join(&digest);
    tmp.persist(&dest).map_err(|e| io_err(e.error))?;
    Ok(LayerBlob {
        digest: format!("sha256:{digest}"),
        diff_id: format!("sha256:{diff_id}"),
        size,
        tar_size,
        media_type: opts.compression.media_type().to_string(),
        entries,
    })
}

/// Write the tar stream of what `feed` emits; returns the inner writer, the
/// diff_id hex, the tar size and the number of entries.
fn write_tar<W: Write>(
    feed: &mut Feed,
    w: HashWriter<W>,
    dir: &Path,
) -> Result<(W, String, u64, usize), LayerError> {
    let io_err = |source| LayerError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.sparse(false);
    let mut count = 0usize;
    feed(&mut |e: &Entry| {
        append_entry(&mut b, e).map_err(io_err)?;
        count += 1;
        Ok(())
    })?;
    let w = b.into_inner().map_err(io_err)?;
    let (inner, hex, n) = w.finish();
    Ok((inner, hex, n, count))
}

/// One entry's header and content.
fn append_entry<W: Write>(b: &mut tar::Builder<W>, e: &Entry) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(e.mode & 0o7777);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_username(&e.uname)?;
    h.set_groupname(&e.gname)?;
    match &e.kind {
        Kind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{}/", e.path), io::empty())?;
        }
        Kind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(e.size);
            let mut r = e.reader()?;
            let mut counted = (&mut r).take(e.size);
            b.append_data(&mut h, &e.path, &mut counted)?;
            if counted.limit() != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: content shorter than its size", e.path),
                ));
            }
        }
        Kind::Symlink(t) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &e.path, t)?;
        }
        Kind::Hardlink(t) => {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            b.append_link(&mut h, &e.path, t)?;
        }
    }
    Ok(())
}

/// Read a layer blob back as a tar stream (gzip or zstd, by magic bytes).
pub fn open_blob(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = io::BufReader::new(File::open(path)?);
    let mut magic = [0u8; 4];
    let n = {
        use io::BufRead;
        let buf = f.fill_buf()?;
        let n = buf.len().min(4);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(f)))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(f)?))
    } else {
        Ok(Box::new(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_path_rejects_dotdot() {
        assert_eq!(normalize_path("./usr//bin/").unwrap(), "usr/bin");
        assert_eq!(normalize_path("/etc/x").unwrap(), "etc/x");
        assert!(normalize_path("usr/../../etc").is_err());
        assert!(normalize_path("./").is_err());
    }

    #[test]
    fn parents_sort_before_children() {
        let mut v = vec!["a-b", "a/b", "a", "a/b/c", "a.b"];
        v.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        assert_eq!(v, vec!["a", "a/b", "a/b/c", "a-b", "a.b"]);
    }

    #[test]
    fn writes_through_symlinks_are_rejected() {
        let e = vec![
            Entry::symlink("evil", "/etc", 0, "pkg"),
            Entry::bytes("evil/passwd", b"x".to_vec(), 0o644, 0, "pkg"),
        ];
        let err = normalize(e, &BTreeSet::new(), 0).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
    }
}
