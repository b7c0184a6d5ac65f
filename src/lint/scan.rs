//! One streaming pass over a layer tar: every path with its type, symlink
//! target, and, for the files the lint reads, what they run with.
//!
//! Which files are read (see [`reads`]): every regular file with an exec
//! bit (its `#!` line or ELF headers), every file named like a shared
//! object (`*.so`, `*.so.*`: its `DT_NEEDED`, whatever its mode, since
//! libraries are mapped, not executed, and are often `0644`), and the
//! loader's configuration (`etc/ld.so.conf`, `etc/ld.so.conf.d/*`) as
//! text. Other files are listed, never read. A hard link gets what its
//! target (earlier in the same layer) was found to be.
//!
//! With the layer's path index (`layer::index`: package layers have one),
//! each path is attributed to the package that ships it.

use super::LintError;
use super::elf::{self, Content};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// Largest loader configuration file read.
const MAX_TEXT: u64 = 64 << 10;

/// What one layer holds, as the lint sees it (stored in the step store,
/// keyed by the layer's digest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFacts {
    /// In the layer's order.
    pub entries: Vec<Fact>,
}

/// One path of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// Relative, no leading or trailing `/`.
    pub path: String,
    pub kind: FactKind,
    /// The package that ships it (from the layer's path index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

/// The type of a path, or a whiteout of the layers below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactKind {
    Dir,
    Symlink(String),
    /// A regular file (or a hard link to one), FIFOs and the like too.
    File {
        exec: bool,
        content: Content,
    },
    /// `.wh.<name>`: the path is removed from the layers below.
    Whiteout,
    /// `.wh..wh..opq`: the directory's children below are removed.
    Opaque,
}

/// Whether the lint reads a file of this path and mode.
pub fn reads(path: &str, mode: u32) -> ReadAs {
    if is_ld_conf(path) {
        ReadAs::Text
    } else if mode & 0o111 != 0 || is_shared_object(path) {
        ReadAs::Head
    } else {
        ReadAs::No
    }
}

/// How [`reads`] reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    No,
    /// `#!` or ELF headers.
    Head,
    /// The whole (small) file as text.
    Text,
}

/// `libz.so.1`, `libc.so.6`, `_ssl.cpython-311-x86_64-linux-gnu.so`.
pub fn is_shared_object(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so") || name.contains(".so.")
}

fn is_ld_conf(path: &str) -> bool {
    path == "etc/ld.so.conf" || path.starts_with("etc/ld.so.conf.d/")
}

/// Scan the layer blob `blob` (gzip, zstd or plain tar), attributing paths
/// with its path index `index` when it has one.
pub fn scan_layer(blob: &Path, index: Option<&Path>) -> Result<LayerFacts, LintError> {
    let err = |source| LintError::Read {
        layer: blob.display().to_string(),
        source,
    };
    let owners = match index {
        Some(i) => owners(i).map_err(|source| LintError::Read {
            layer: i.display().to_string(),
            source,
        })?,
        None => BTreeMap::new(),
    };
    let mut ar = tar::Archive::new(crate::layer::open_blob(blob).map_err(err)?);
    let mut facts = LayerFacts::default();
    // Files of this layer by path, for its hard links.
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    for entry in ar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let Some(mut fact) = fact(&mut entry, &facts, &files).map_err(err)? else {
            continue;
        };
        if matches!(fact.kind, FactKind::File { .. }) {
            files.insert(fact.path.clone(), facts.entries.len());
        }
        fact.package = owners.get(&fact.path).cloned();
        facts.entries.push(fact);
    }
    Ok(facts)
}

/// One tar entry as a fact (`None` for the root itself).
fn fact<R: Read>(
    entry: &mut tar::Entry<R>,
    facts: &LayerFacts,
    files: &BTreeMap<String, usize>,
) -> io::Result<Option<Fact>> {
    let Some(path) = clean(&String::from_utf8_lossy(&entry.path_bytes())) else {
        return Ok(None);
    };
    let (parent, base) = path.rsplit_once('/').unwrap_or(("", &path));
    let at = |p: &str, kind| Fact {
        path: p.to_string(),
        kind,
        package: None,
    };
    if base == ".wh..wh..opq" {
        return Ok(Some(at(parent, FactKind::Opaque)));
    }
    if let Some(hidden) = base.strip_prefix(".wh.") {
        let p = if parent.is_empty() {
            hidden.to_string()
        } else {
            format!("{parent}/{hidden}")
        };
        return Ok(Some(at(&p, FactKind::Whiteout)));
    }
    let h = entry.header();
    let mode = h.mode().unwrap_or(0);
    let exec = mode & 0o111 != 0;
    let link = || -> String {
        entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    };
    let kind = match h.entry_type() {
        tar::EntryType::Directory => FactKind::Dir,
        tar::EntryType::Symlink => FactKind::Symlink(link()),
        tar::EntryType::Link => {
            let target = clean(&link()).unwrap_or_default();
            let content = match files.get(&target).map(|i| &facts.entries[*i].kind) {
                Some(FactKind::File { content, .. }) => content.clone(),
                _ => Content::Unread,
            };
            FactKind::File { exec, content }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let size = entry.size();
            let content = match reads(&path, mode) {
                ReadAs::No => Content::Unread,
                ReadAs::Head => elf::read_content(entry, size)?,
                ReadAs::Text if size <= MAX_TEXT => {
                    let mut s = String::new();
                    entry.read_to_string(&mut s).ok();
                    Content::Text(s)
                }
                ReadAs::Text => Content::Other,
            };
            FactKind::File { exec, content }
        }
        _ => FactKind::File {
            exec: false,
            content: Content::Unread,
        },
    };
    Ok(Some(at(&path, kind)))
}

/// A tar name as a relative path: `./usr/bin/` -> `usr/bin`; `None` for
/// the root.
fn clean(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Path -> package of a layer's path index (`[path, kind, mode, uid, gid,
/// what, origin]` per line; directories are left out).
fn owners(index: &Path) -> io::Result<BTreeMap<String, String>> {
    let r = io::BufReader::new(std::fs::File::open(index)?);
    let mut out = BTreeMap::new();
    for line in r.lines() {
        let line = line?;
        let rec: (String, String, u32, u64, u64, String, String) =
            serde_json::from_str(&line).map_err(io::Error::other)?;
        if rec.1 != "dir" && !rec.6.is_empty() {
            out.insert(rec.0, rec.6);
        }
    }
    Ok(out)
}
