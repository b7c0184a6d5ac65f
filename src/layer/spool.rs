//! External merge sort of layer entries.
//!
//! [`EntrySpool`] takes the entries of a layer one at a time and serializes
//! each into a compact record (a few dozen bytes plus its path and names).
//! Records collect in an in-memory run of bounded size; a full run is sorted
//! (by path components, then by arrival) and appended to one unnamed
//! temporary file. [`EntrySpool::items`] k-way merges the runs back into one
//! sorted stream, so memory stays bounded by the run size and one read
//! buffer per run, whatever the number of entries.
//!
//! File contents are never in the records: a record names a package spool
//! file and an offset, a path on disk, or a small generated blob, held in
//! side tables here (a few per package). Hard links are also kept in memory
//! (they are rare): [`super::stream`] needs them before the sorted pass.

use super::{Content, Entry, Kind, LayerError};
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of records held in memory before a sorted run is written out.
const RUN_BYTES: usize = 32 << 20;
/// Read buffer of each run during the merge.
const RUN_READ_BUF: usize = 128 << 10;

/// Where entries of a layer come from: a package (whose paths must be
/// unique within it) or any other source (recipe files, generated entries).
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// What [`Entry::origin`] says.
    pub origin: String,
    /// For packages: how errors name it (`package NAME (FILE)`).
    pub package: Option<String>,
}

/// How a package entry was named in its `data.tar`, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Raw {
    /// `./` + the normalized path (before merged-/usr).
    Dot,
    /// `./` + the normalized path + `/`.
    DotSlash,
    /// Anything else, verbatim.
    Other(String),
}

/// What the sort knows about an entry besides the entry itself.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub src: u32,
    /// Moved under `usr/` by merged-/usr.
    pub merged: bool,
    pub raw: Raw,
    /// Arrival order: ties between equal paths keep it.
    pub seq: u64,
}

/// An entry and its [`Meta`], as the sorted stream yields it.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub e: Entry,
    pub m: Meta,
}

/// A hard link, remembered apart from the stream.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub path: String,
    pub target: String,
    pub src: u32,
    pub seq: u64,
}

/// Compare two paths by components (`/` sorts below every other byte), the
/// order of [`super::sort_key`].
pub(crate) fn cmp_paths(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let map = |c: &u8| if *c == b'/' { 0u8 } else { *c };
    a.iter().map(map).cmp(b.iter().map(map))
}

/// Entries of one layer, sorted on disk in bounded memory.
pub struct EntrySpool {
    file: File,
    dir: PathBuf,
    /// Sorted runs written so far: (offset, length) in `file`.
    runs: Vec<(u64, u64)>,
    end: u64,
    /// The current run: records back to back, and where each starts.
    buf: Vec<u8>,
    starts: Vec<usize>,
    files: Vec<Arc<File>>,
    blobs: Vec<Arc<Vec<u8>>>,
    sources: Vec<Source>,
    by_origin: BTreeMap<String, u32>,
    links: Vec<Link>,
    seq: u64,
    run_bytes: usize,
}

impl EntrySpool {
    /// An empty spool whose runs go to an unnamed temporary file in `dir`.
    pub fn new(dir: &Path) -> Result<EntrySpool, LayerError> {
        let file = tempfile::tempfile_in(dir).map_err(|source| LayerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(EntrySpool {
            file,
            dir: dir.to_path_buf(),
            runs: Vec::new(),
            end: 0,
            buf: Vec::new(),
            starts: Vec::new(),
            files: Vec::new(),
            blobs: Vec::new(),
            sources: Vec::new(),
            by_origin: BTreeMap::new(),
            links: Vec::new(),
            seq: 0,
            run_bytes: RUN_BYTES,
        })
    }

    /// Use runs of `bytes` (tests force many small runs).
    pub fn with_run_bytes(mut self, bytes: usize) -> EntrySpool {
        self.run_bytes = bytes.max(1);
        self
    }

    /// Add an entry of a non-package source (its `origin` names it).
    pub fn push(&mut self, e: Entry) -> Result<(), LayerError> {
        let src = match self.by_origin.get(&e.origin) {
            Some(&s) => s,
            None => {
                let s = self.add_source(e.origin.clone(), None);
                self.by_origin.insert(e.origin.clone(), s);
                s
            }
        };
        self.push_with(e, src, false, Raw::Dot)
    }

    /// Register a source; `package` is the name errors give a package.
    pub(crate) fn add_source(&mut self, origin: String, package: Option<String>) -> u32 {
        self.sources.push(Source { origin, package });
        (self.sources.len() - 1) as u32
    }

    pub(crate) fn sources(&self) -> &[Source] {
        &self.sources
    }

    pub(crate) fn links(&self) -> &[Link] {
        &self.links
    }

    /// Add an entry of source `src`.
    pub(crate) fn push_with(
        &mut self,
        e: Entry,
        src: u32,
        merged: bool,
        raw: Raw,
    ) -> Result<(), LayerError> {
        let m = Meta {
            src,
            merged,
            raw,
            seq: self.seq,
        };
        self.seq += 1;
        if let Kind::Hardlink(t) = &e.kind {
            self.links.push(Link {
                path: e.path.clone(),
                target: t.clone(),
                src,
                seq: m.seq,
            });
        }
        let content = self.content_ref(&e.content);
        self.starts.push(self.buf.len());
        encode(&mut self.buf, &e, &m, &content);
        if self.buf.len() >= self.run_bytes {
            self.flush_run()?;
        }
        Ok(())
    }

    fn content_ref(&mut self, c: &Content) -> ContentRef {
        match c {
            Content::None => ContentRef::None,
            Content::Spool { file, offset } => {
                let i = match self.files.iter().rposition(|f| Arc::ptr_eq(f, file)) {
                    Some(i) => i,
                    None => {
                        self.files.push(file.clone());
                        self.files.len() - 1
                    }
                };
                ContentRef::Spool(i as u32, *offset)
            }
            Content::Path(p) => ContentRef::Path(p.as_os_str().as_bytes().to_vec()),
            Content::Bytes(b) => {
                self.blobs.push(b.clone());
                ContentRef::Blob((self.blobs.len() - 1) as u32)
            }
        }
    }

    fn io_err(&self, source: io::Error) -> LayerError {
        LayerError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    /// Sort the current run and append it to the file.
    fn flush_run(&mut self) -> Result<(), LayerError> {
        if self.starts.is_empty() {
            return Ok(());
        }
        let buf = &self.buf;
        let rec = |s: usize| record_at(buf, s);
        self.starts.sort_by(|&a, &b| cmp_records(rec(a), rec(b)));
        let mut w = BufWriter::with_capacity(1 << 20, &self.file);
        let mut len = 0u64;
        for &s in &self.starts {
            let r = record_at(buf, s);
            w.write_all(&(r.len() as u32).to_le_bytes())
                .and_then(|()| w.write_all(r))
                .map_err(|e| self.io_err(e))?;
            len += 4 + r.len() as u64;
        }
        w.flush().map_err(|e| self.io_err(e))?;
        drop(w);
        self.runs.push((self.end, len));
        self.end += len;
        self.buf.clear();
        self.starts.clear();
        if self.buf.capacity() > self.run_bytes * 2 {
            self.buf.shrink_to(self.run_bytes);
        }
        Ok(())
    }

    /// Write out the last run; after this, [`EntrySpool::items`] may be called.
    pub(crate) fn seal(&mut self) -> Result<(), LayerError> {
        self.flush_run()
    }

    /// The entries in sorted order (path components, then arrival).
    pub(crate) fn items(&self) -> Result<Merge<'_>, LayerError> {
        let mut heap = BinaryHeap::new();
        let mut readers = Vec::new();
        for (i, &(off, len)) in self.runs.iter().enumerate() {
            let mut r = BufReader::with_capacity(
                RUN_READ_BUF,
                RangeRead {
                    file: &self.file,
                    pos: off,
                    end: off + len,
                },
            );
            if let Some(body) = next_record(&mut r).map_err(|e| self.io_err(e))? {
                heap.push(Head { body, run: i });
            }
            readers.push(r);
        }
        Ok(Merge {
            spool: self,
            heap,
            readers,
        })
    }

    fn decode(&self, body: &[u8]) -> io::Result<Item> {
        decode(body, self)
    }
}

/// Where a record says the content is.
enum ContentRef {
    None,
    Spool(u32, u64),
    Path(Vec<u8>),
    Blob(u32),
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Serialize: `[len u32][path][seq u64][rest]`; the sort reads path and seq.
fn encode(out: &mut Vec<u8>, e: &Entry, m: &Meta, c: &ContentRef) {
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    put_bytes(out, e.path.as_bytes());
    out.extend_from_slice(&m.seq.to_le_bytes());
    out.extend_from_slice(&m.src.to_le_bytes());
    let flags = u8::from(m.merged) | (u8::from(e.sha256.is_some()) << 1);
    out.push(flags);
    match &m.raw {
        Raw::Dot => out.push(0),
        Raw::DotSlash => out.push(1),
        Raw::Other(s) => {
            out.push(2);
            put_bytes(out, s.as_bytes());
        }
    }
    match &e.kind {
        Kind::Dir => out.push(0),
        Kind::File => out.push(1),
        Kind::Symlink(t) => {
            out.push(2);
            put_bytes(out, t.as_bytes());
        }
        Kind::Hardlink(t) => {
            out.push(3);
            put_bytes(out, t.as_bytes());
        }
    }
    out.extend_from_slice(&e.mode.to_le_bytes());
    for v in [e.uid, e.gid, e.mtime, e.size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_bytes(out, e.uname.as_bytes());
    put_bytes(out, e.gname.as_bytes());
    match c {
        ContentRef::None => out.push(0),
        ContentRef::Spool(i, off) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        ContentRef::Path(p) => {
            out.push(2);
            put_bytes(out, p);
        }
        ContentRef::Blob(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    if let Some(s) = &e.sha256 {
        out.extend_from_slice(s);
    }
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The record body starting at `s` (which points at its length).
fn record_at(buf: &[u8], s: usize) -> &[u8] {
    let len = u32::from_le_bytes(buf[s..s + 4].try_into().expect("4 bytes")) as usize;
    &buf[s + 4..s + 4 + len]
}

/// A record's path and arrival number.
fn sort_fields(body: &[u8]) -> (&[u8], u64) {
    let n = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    let path = &body[4..4 + n];
    let seq = u64::from_le_bytes(body[4 + n..12 + n].try_into().expect("8 bytes"));
    (path, seq)
}

fn cmp_records(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let (pa, sa) = sort_fields(a);
    let (pb, sb) = sort_fields(b);
    cmp_paths(pa, pb).then(sa.cmp(&sb))
}

/// A cursor over a record body.
struct Dec<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let s = self
            .b
            .get(self.p..self.p + n)
            .ok_or_else(|| corrupt("record too short"))?;
        self.p += n;
        Ok(s)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt("path is not UTF-8"))
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("entry spool: {what}"))
}

/// Rebuild an entry from its record, with the spool's side tables.
fn decode(body: &[u8], sp: &EntrySpool) -> io::Result<Item> {
    let mut d = Dec { b: body, p: 0 };
    let path = d.string()?;
    let seq = d.u64()?;
    let src = d.u32()?;
    let flags = d.u8()?;
    let raw = match d.u8()? {
        0 => Raw::Dot,
        1 => Raw::DotSlash,
        _ => Raw::Other(d.string()?),
    };
    let kind = match d.u8()? {
        0 => Kind::Dir,
        1 => Kind::File,
        2 => Kind::Symlink(d.string()?),
        _ => Kind::Hardlink(d.string()?),
    };
    let mode = d.u32()?;
    let (uid, gid, mtime, size) = (d.u64()?, d.u64()?, d.u64()?, d.u64()?);
    let uname = d.string()?;
    let gname = d.string()?;
    let content = match d.u8()? {
        0 => Content::None,
        1 => {
            let i = d.u32()? as usize;
            let file = sp.files.get(i).ok_or_else(|| corrupt("bad file"))?.clone();
            Content::Spool {
                file,
                offset: d.u64()?,
            }
        }
        2 => Content::Path(PathBuf::from(std::ffi::OsStr::from_bytes(d.bytes()?))),
        _ => {
            let i = d.u32()? as usize;
            Content::Bytes(sp.blobs.get(i).ok_or_else(|| corrupt("bad blob"))?.clone())
        }
    };
    let sha256 = if flags & 2 != 0 {
        Some(d.take(32)?.try_into().expect("32"))
    } else {
        None
    };
    let origin = sp
        .sources
        .get(src as usize)
        .ok_or_else(|| corrupt("bad source"))?
        .origin
        .clone();
    let e = Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        uname,
        gname,
        mtime,
        size,
        content,
        sha256,
        origin,
    };
    let m = Meta {
        src,
        merged: flags & 1 != 0,
        raw,
        seq,
    };
    Ok(Item { e, m })
}

/// Reads `pos..end` of a file without moving its cursor.
struct RangeRead<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RangeRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.end - self.pos).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.pos)?;
        if n == 0 {
            return Err(corrupt("run shorter than written"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn next_record(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The smallest unread record of a run.
struct Head {
    body: Vec<u8>,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    /// Reversed: `BinaryHeap` is a max-heap and the merge wants the least.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        cmp_records(&o.body, &self.body)
    }
}

/// The k-way merge of the sorted runs.
pub(crate) struct Merge<'a> {
    spool: &'a EntrySpool,
    heap: BinaryHeap<Head>,
    readers: Vec<BufReader<RangeRead<'a>>>,
}

impl Iterator for Merge<'_> {
    type Item = Result<Item, LayerError>;
    fn next(&mut self) -> Option<Self::Item> {
        let head = self.heap.pop()?;
        let mut step = || -> io::Result<Item> {
            if let Some(body) = next_record(&mut self.readers[head.run])? {
                self.heap.push(Head {
                    body,
                    run: head.run,
                });
            }
            self.spool.decode(&head.body)
        };
        Some(step().map_err(|e| self.spool.io_err(e)))
    }
}
