//! Path indexes of package layers, and the paths two layers of one image
//! both ship.
//!
//! Within a layer, [`super::normalize`] refuses two packages that ship one
//! path differently. Packages grouped into different layers never meet
//! there, and in the image the upper layer would silently win, where dpkg
//! would have refused the second package. So every package layer also
//! writes an index: one line per entry, in the layer's order (paths by
//! components), `[path, kind, mode, uid, gid, what, origin]` as JSON, where
//! `what` is a file's sha256 or a link's target. [`check`] merges the
//! indexes of an image's layers, reading one line of each at a time (memory
//! does not grow with the number of entries), and applies the rules of one
//! layer across them: a directory must agree on its permissions, anything
//! else must be the same kind with the same permissions and content.
//! Identical copies are allowed, as within a layer.

use super::spool::cmp_paths;
use super::{Entry, Kind, LayerError};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

/// One indexed entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Record(String, String, u32, u64, u64, String, String);

/// Append `e`'s index line to `w`.
pub fn write_record(w: &mut dyn Write, e: &Entry) -> io::Result<()> {
    let (kind, what) = match &e.kind {
        Kind::Dir => ("dir", String::new()),
        // A file the layer stores as a hard link to an identical earlier
        // one keeps its content hash: compare it as the file it is.
        Kind::File | Kind::Hardlink(_) if e.sha256.is_some() => {
            ("file", e.sha256.map(hex::encode).unwrap_or_default())
        }
        Kind::File => ("file", String::new()),
        Kind::Symlink(t) => ("symlink", t.clone()),
        Kind::Hardlink(t) => ("hardlink", t.clone()),
    };
    let r = Record(
        e.path.clone(),
        kind.into(),
        e.mode & 0o7777,
        e.uid,
        e.gid,
        what,
        e.origin.clone(),
    );
    serde_json::to_writer(&mut *w, &r).map_err(io::Error::other)?;
    w.write_all(b"\n")
}

/// What differs between two records of one path, if anything matters.
fn difference(a: &Record, b: &Record) -> Option<String> {
    if a.1 != b.1 {
        return Some(format!("types ({:?} vs {:?})", a.1, b.1));
    }
    if (a.2, a.3, a.4) != (b.2, b.3, b.4) {
        let what = if a.1 == "dir" {
            "directory permissions"
        } else {
            "permissions"
        };
        return Some(format!(
            "{what} ({:o} {}:{} vs {:o} {}:{})",
            a.2, a.3, a.4, b.2, b.3, b.4
        ));
    }
    (a.5 != b.5).then(|| match a.1.as_str() {
        "file" => "content".to_string(),
        _ => "link targets".to_string(),
    })
}

/// The head line of one index in the merge.
struct Head {
    record: Record,
    layer: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    /// Reversed: the heap pops the smallest path, lowest layer first.
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_paths(other.record.0.as_bytes(), self.record.0.as_bytes())
            .then(other.layer.cmp(&self.layer))
    }
}

/// Reads one index line by line.
struct Lines {
    path: PathBuf,
    reader: io::BufReader<std::fs::File>,
    line: String,
}

impl Lines {
    fn open(path: &Path) -> Result<Lines, LayerError> {
        let f = std::fs::File::open(path).map_err(|source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Lines {
            path: path.to_path_buf(),
            reader: io::BufReader::new(f),
            line: String::new(),
        })
    }

    fn next(&mut self) -> Result<Option<Record>, LayerError> {
        let err = |path: &Path, source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        };
        self.line.clear();
        if self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| err(&self.path, e))?
            == 0
        {
            return Ok(None);
        }
        serde_json::from_str(&self.line)
            .map(Some)
            .map_err(|e| err(&self.path, io::Error::other(e)))
    }
}

/// Check the indexes of an image's package layers (bottom first) against
/// each other; the first path two of them ship differently is the error.
pub fn check(indexes: &[PathBuf]) -> Result<(), LayerError> {
    let mut readers = indexes
        .iter()
        .map(|p| Lines::open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut heap = BinaryHeap::new();
    for (layer, r) in readers.iter_mut().enumerate() {
        if let Some(record) = r.next()? {
            heap.push(Head { record, layer });
        }
    }
    // The first record of the current path (from the lowest layer).
    let mut first: Option<Record> = None;
    while let Some(Head { record, layer }) = heap.pop() {
        if let Some(next) = readers[layer].next()? {
            heap.push(Head {
                record: next,
                layer,
            });
        }
        match &first {
            Some(f) if f.0 == record.0 => {
                if let Some(what) = difference(f, &record) {
                    return Err(LayerError::Conflict {
                        path: record.0,
                        first: f.6.clone(),
                        second: record.6,
                        what,
                    });
                }
            }
            _ => first = Some(record),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind, mode: u32, sha: Option<u8>, origin: &str) -> Entry {
        let mut e = Entry::dir(path, 0, origin);
        e.kind = kind;
        e.mode = mode;
        e.sha256 = sha.map(|b| [b; 32]);
        e
    }

    fn index(dir: &Path, name: &str, entries: &[Entry]) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        for e in entries {
            write_record(&mut f, e).unwrap();
        }
        p
    }

    #[test]
    fn identical_copies_and_distinct_paths_pass() {
        let t = tempfile::tempdir().unwrap();
        let a = index(
            t.path(),
            "a",
            &[
                entry("etc", Kind::Dir, 0o755, None, "a"),
                entry("etc/a.conf", Kind::File, 0o644, Some(1), "a"),
                entry("usr/share/doc/x", Kind::File, 0o644, Some(9), "a"),
            ],
        );
        let b = index(
            t.path(),
            "b",
            &[
                entry("etc", Kind::Dir, 0o755, None, "b"),
                entry("etc/b.conf", Kind::File, 0o644, Some(2), "b"),
                entry(
                    "usr/share/doc/x",
                    Kind::Hardlink("y".into()),
                    0o644,
                    Some(9),
                    "b",
                ),
            ],
        );
        check(&[a, b]).unwrap();
    }

    #[test]
    fn different_content_in_two_layers_is_named() {
        let t = tempfile::tempdir().unwrap();
        let a = index(
            t.path(),
            "a",
            &[entry("etc/x", Kind::File, 0o644, Some(1), "libfoo1")],
        );
        let b = index(
            t.path(),
            "b",
            &[
                entry("etc", Kind::Dir, 0o755, None, "bar"),
                entry("etc/x", Kind::File, 0o644, Some(2), "bar"),
            ],
        );
        let e = check(&[a, b]).unwrap_err().to_string();
        assert!(
            e.starts_with("\"etc/x\" is shipped by both libfoo1 and bar with different content"),
            "{e}"
        );
    }

    #[test]
    fn kinds_and_directory_permissions_must_agree() {
        let t = tempfile::tempdir().unwrap();
        let a = index(
            t.path(),
            "a",
            &[entry("var/mail", Kind::Dir, 0o2775, None, "base-files")],
        );
        let b = index(
            t.path(),
            "b",
            &[entry("var/mail", Kind::Dir, 0o755, None, "mailer")],
        );
        let c = index(
            t.path(),
            "c",
            &[entry(
                "var/mail",
                Kind::Symlink("spool".into()),
                0o777,
                None,
                "odd",
            )],
        );
        let e = check(&[a.clone(), b]).unwrap_err().to_string();
        assert!(
            e.contains("different directory permissions (2775 0:0 vs 755 0:0)"),
            "{e}"
        );
        let e = check(&[a, c]).unwrap_err().to_string();
        assert!(
            e.contains("different types (\"dir\" vs \"symlink\")"),
            "{e}"
        );
    }
}
