//! Decompressed `data.tar` copies, so one build decompresses each package
//! once.
//!
//! A cold build reads a package's `data.tar` several times: for its layer,
//! for the paths its maintainer scripts may ask `dpkg -L` about, and for
//! license detection (copyright file, programs). Decompressing xz is most
//! of that cost. With a [`PlainCache`] in the [`super::Limits`], the first
//! reader's decompressed stream is copied to a file as it is read (and the
//! rest of the member after the reader stops), and later readers read that
//! copy instead of decompressing again. The copy goes through the same
//! size cap and tar guard as the original, and errors still name the
//! package file and its member.
//!
//! A copy is only adopted once the whole member decompressed within the
//! size cap; a failed or partial read leaves nothing behind. Copies are
//! named by the package file's path; the cache's directory belongs to one
//! build, which removes it at the end.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// See the module documentation.
#[derive(Debug)]
pub struct PlainCache {
    dir: PathBuf,
    /// Package file -> (its decompressed copy, the member's name).
    done: Mutex<BTreeMap<PathBuf, (PathBuf, String)>>,
}

impl PlainCache {
    /// Copies will be written in `dir` (created on first use).
    pub fn new(dir: &Path) -> PlainCache {
        PlainCache {
            dir: dir.to_path_buf(),
            done: Mutex::new(BTreeMap::new()),
        }
    }

    /// The decompressed copy of `deb`'s data member, opened, and the
    /// member's name; `None` when there is none (yet).
    pub(super) fn open(&self, deb: &Path) -> Option<(File, String)> {
        let (copy, member) = self.done.lock().expect("plain").get(deb)?.clone();
        File::open(copy).ok().map(|f| (f, member))
    }

    /// A writer for a new copy of `deb`'s data member, or `None` if the
    /// directory cannot be written (the cache is only an optimization).
    pub(super) fn start(&self) -> Option<BufWriter<tempfile::NamedTempFile>> {
        std::fs::create_dir_all(&self.dir).ok()?;
        let t = tempfile::Builder::new()
            .prefix(".data-")
            .tempfile_in(&self.dir)
            .ok()?;
        Some(BufWriter::with_capacity(1 << 20, t))
    }

    /// Adopt a finished copy of `deb`'s `member`.
    fn adopt(&self, deb: &Path, member: &str, w: BufWriter<tempfile::NamedTempFile>) {
        let Ok(tmp) = w.into_inner() else { return };
        let mut done = self.done.lock().expect("plain");
        if done.contains_key(deb) {
            return; // another reader finished first; same bytes
        }
        let name = format!("{}.tar", done.len());
        let dest = self.dir.join(name);
        if tmp.persist(&dest).is_ok() {
            done.insert(deb.to_path_buf(), (dest, member.to_string()));
        }
    }
}

/// A reader that copies what passes through it into a new cache entry.
pub(super) struct Tee<R> {
    pub inner: R,
    pub out: Option<BufWriter<tempfile::NamedTempFile>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = &mut self.out
            && w.write_all(&buf[..n]).is_err()
        {
            self.out = None;
        }
        Ok(n)
    }
}

impl<R: Read> Tee<R> {
    /// After a successful read: copy the rest of the member (still
    /// through the size cap) and adopt the copy if all of it arrived.
    pub fn finish(mut self, cache: &PlainCache, deb: &Path, member: &str) {
        if self.out.is_none() {
            return;
        }
        let mut sink = io::sink();
        if io::copy(&mut self, &mut sink).is_err() {
            return;
        }
        if let Some(w) = self.out.take() {
            cache.adopt(deb, member, w);
        }
    }
}
