//! Read, in one streaming pass over a `.deb`'s `data.tar`, what license
//! detection needs: the copyright file (or the symlink in its place), the
//! paths the package installs, which are regular files, and for every
//! program in `bin/`/`sbin/`/`libexec/` its ELF `DT_NEEDED` entries and
//! imported symbols (goblin), or that it is a script.

use crate::deb::{self, DataFile, DebError, Limits};
use crate::sbom::applies::{PackageEvidence, Program, REGULAR_DIRS, is_exec_path};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// Largest program read for its ELF headers.
const MAX_PROGRAM: u64 = 64 << 20;

/// What one pass over a package found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Paths, regular files, programs (no siblings yet).
    pub evidence: PackageEvidence,
    /// `usr/share/doc/<doc>` itself, when it is a symlink.
    pub dir: Option<DataFile>,
    /// `usr/share/doc/<doc>/copyright`.
    pub copyright: Option<DataFile>,
}

fn program(path: &str, bytes: &[u8]) -> Option<Program> {
    let elf = goblin::elf::Elf::parse(bytes).ok()?;
    let imports = elf
        .dynsyms
        .iter()
        .filter(|s| s.st_shndx == 0 && s.st_name != 0)
        .filter_map(|s| elf.dynstrtab.get_at(s.st_name))
        .map(str::to_string)
        .collect();
    Some(Program {
        path: path.to_string(),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        imports,
    })
}

/// Scan `deb`; `doc` names the `usr/share/doc/<doc>` directory to read.
pub fn scan(deb: &Path, doc: &str, limits: &Limits) -> Result<Scan, DebError> {
    let dir = format!("usr/share/doc/{doc}");
    let file = format!("{dir}/copyright");
    deb::with_data_tar(deb, limits, |dt| {
        let mut s = Scan::default();
        let mut all = Vec::new();
        let entries = dt.archive.entries().map_err(|e| dt.ctx.error(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| dt.ctx.error(e))?;
            let raw = entry
                .path()
                .map_err(|e| dt.ctx.error(e))?
                .to_string_lossy()
                .to_string();
            let Some(name) = deb::strip_data_prefix(&raw).map(str::to_string) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let link = || {
                entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().to_string())
                    .unwrap_or_default()
            };
            if kind.is_symlink() {
                let t = link();
                if name == dir {
                    s.dir = Some(DataFile::Symlink(t));
                } else if name == file {
                    s.copyright = Some(DataFile::Symlink(t));
                }
            } else if kind.is_file() {
                if REGULAR_DIRS.iter().any(|d| name.starts_with(d)) {
                    s.evidence.regular.insert(name.clone());
                }
                let wanted_exec = is_exec_path(&name) && entry.size() <= MAX_PROGRAM;
                if name == file || wanted_exec {
                    let mut buf = Vec::with_capacity(entry.size() as usize);
                    entry.read_to_end(&mut buf).map_err(|e| dt.ctx.error(e))?;
                    if name == file {
                        s.copyright = Some(DataFile::File(buf));
                    } else if let Some(p) = program(&name, &buf) {
                        s.evidence.programs.push(p);
                    } else if buf.starts_with(b"#!") {
                        s.evidence.scripts.push(name.clone());
                    }
                }
            }
            all.push(name);
        }
        s.evidence.paths = leaves(all);
        Ok::<_, DebError>(s)
    })
}

/// Keep leaves only: an entry that is the parent of another is a
/// directory. Sorted and filtered in place: a package's paths are held
/// once, however many there are.
fn leaves(mut all: Vec<String>) -> Vec<String> {
    all.sort_unstable();
    all.dedup();
    let keep: Vec<bool> = {
        let parents: BTreeSet<&str> = all
            .iter()
            .flat_map(|p| p.match_indices('/').map(move |(i, _)| &p[..i]))
            .collect();
        all.iter().map(|p| !parents.contains(p.as_str())).collect()
    };
    let mut i = 0;
    all.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    all.shrink_to_fit();
    all
}
