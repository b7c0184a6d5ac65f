//! Artifacts: resolving them in the build root, storing them, reusing them.
//!
//! After the steps ran, each declared artifact (an absolute path or a glob
//! such as `/out/*.so`; `*`, `?` and `[...]` match within one component) is
//! resolved beneath the root without following symlinks: a symlink in the
//! middle of an artifact path is an error, a symlink as the artifact itself
//! is recorded as a symlink. A directory brings everything below it.
//!
//! A result lives in `<store>/<key>/`:
//!
//! ```text
//! artifacts.json     {"format":1,"key":..,"artifacts":[{path,type,mode,size,sha256,target}]}
//! files/<sha256>     the content of every regular file (deduplicated)
//! ```
//!
//! It is assembled in a temporary sibling directory and renamed into place,
//! so a reader sees a complete result or none. [`load`] checks the manifest
//! and every file's size and sha256 before reusing a result; anything odd
//! makes it a miss (and the stage is rebuilt).

use super::beneath::{Found, Refused, Root};
use super::{Artifact, SandboxError};
use crate::layer::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

const FORMAT: u32 = 1;
const MANIFEST: &str = "artifacts.json";

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    key: String,
    artifacts: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    mode: u32,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Resolve one artifact pattern beneath the root: the matching paths
/// (root-relative, sorted). An empty result means "not produced".
pub fn expand(root: &Root, pattern: &str) -> Result<Vec<String>, Refused> {
    let comps = super::beneath::components(pattern)?;
    if comps.is_empty() {
        return Err(Refused::Hostile(
            "an artifact cannot be the whole root".into(),
        ));
    }
    let mut cands = vec![String::new()];
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for base in &cands {
            let join = |n: &str| {
                if base.is_empty() {
                    n.to_string()
                } else {
                    format!("{base}/{n}")
                }
            };
            if has_glob(c) {
                if *c == "**" {
                    return Err(Refused::Hostile(
                        "'**' is not supported; name the directory instead (a directory artifact brings everything below it)".into(),
                    ));
                }
                let pat = glob::Pattern::new(c)
                    .map_err(|e| Refused::Hostile(format!("invalid glob {c:?}: {e}")))?;
                let base_comps: Vec<&str> = if base.is_empty() {
                    vec![]
                } else {
                    base.split('/').collect()
                };
                let dir = root.open_dir(&base_comps, false)?;
                let opts = glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    require_literal_leading_dot: true,
                };
                for name in super::beneath::list_dir(dir.as_fd())? {
                    if !pat.matches_with(&name, opts) {
                        continue;
                    }
                    let (found, _) = super::beneath::lstat_at(dir.as_fd(), &name)?;
                    if last || found == Found::Dir {
                        next.push(join(&name));
                    }
                }
            } else {
                let p = join(c);
                let (found, _) = root.lstat(&p)?;
                match found {
                    Found::Missing => {}
                    Found::Dir => next.push(p),
                    _ if last => next.push(p),
                    Found::Symlink => {
                        return Err(Refused::Hostile(format!(
                            "/{p} is a symlink; artifact paths are resolved without following symlinks, name the real path"
                        )));
                    }
                    _ => {}
                }
            }
        }
        cands = next;
    }
    cands.sort();
    cands.dedup();
    Ok(cands)
}

/// Copy the artifact at `path` (and everything below a directory) into the
/// store directory `dir`, adding records to `out`.
fn collect(
    root: &Root,
    path: &str,
    dir: &Path,
    out: &mut BTreeMap<String, Record>,
) -> Result<(), Refused> {
    if out.contains_key(path) {
        return Ok(());
    }
    let (found, st) = root.lstat(path)?;
    let mode = st.map(|s| s.st_mode & 0o7777).unwrap_or(0);
    match found {
        Found::Missing => {
            return Err(Refused::Hostile(format!("/{path} disappeared")));
        }
        Found::File => {
            let mut f = root.open_file(path)?;
            let mut tmp = tempfile::Builder::new().prefix(".part-").tempfile_in(dir)?;
            let mut hw = crate::digest::HashWriter::new(io::BufWriter::new(tmp.as_file_mut()));
            io::copy(&mut f, &mut hw)?;
            let (mut bw, sha, size) = hw.finish();
            bw.flush()?;
            drop(bw);
            let dest = dir.join("files").join(&sha);
            tmp.persist(&dest).map_err(|e| e.error)?;
            out.insert(
                path.to_string(),
                Record {
                    path: path.to_string(),
                    kind: "file".into(),
                    mode,
                    size,
                    sha256: Some(sha),
                    target: None,
                },
            );
        }
        Found::Symlink => {
            let target = root.read_link(path)?;
            out.insert(
                path.to_string(),
                Record {
                    path: path.to_string(),
                    kind: "symlink".into(),
                    mode: 0o777,
                    size: 0,
                    sha256: None,
                    target: Some(target),
                },
            );
        }
        Found::Dir => {
            out.insert(
                path.to_string(),
                Record {
                    path: path.to_string(),
                    kind: "dir".into(),
                    mode,
                    size: 0,
                    sha256: None,
                    target: None,
                },
            );
            let comps: Vec<&str> = path.split('/').collect();
            let fd = root.open_dir(&comps, false)?;
            for name in super::beneath::list_dir(fd.as_fd())? {
                collect(root, &format!("{path}/{name}"), dir, out)?;
            }
        }
        Found::Other => {
            return Err(Refused::Hostile(format!(
                "/{path} is a socket, FIFO or device, which cannot be an artifact"
            )));
        }
    }
    Ok(())
}

fn to_artifacts(m: &Manifest, dir: &Path) -> Option<Vec<Artifact>> {
    let mut v = Vec::new();
    for r in &m.artifacts {
        let kind = match (r.kind.as_str(), &r.target) {
            ("file", _) => Kind::File,
            ("dir", _) => Kind::Dir,
            ("symlink", Some(t)) => Kind::Symlink(t.clone()),
            _ => return None,
        };
        let file = match (&kind, &r.sha256) {
            (Kind::File, Some(sha)) if crate::digest::is_sha256_hex(sha) => {
                Some(dir.join("files").join(sha))
            }
            (Kind::File, _) => return None,
            _ => None,
        };
        v.push(Artifact {
            path: r.path.clone(),
            kind,
            mode: r.mode,
            file,
            sha256: r.sha256.clone(),
            size: r.size,
        });
    }
    v.sort_by(|a, b| a.path.cmp(&b.path));
    Some(v)
}

/// A complete, verified result in `dir`, or `None`.
pub fn load(dir: &Path, key: &str) -> Option<Vec<Artifact>> {
    let bytes = std::fs::read(dir.join(MANIFEST)).ok()?;
    let m: Manifest = serde_json::from_slice(&bytes).ok()?;
    if m.format != FORMAT || m.key != key {
        return None;
    }
    let arts = to_artifacts(&m, dir)?;
    for a in &arts {
        if let (Some(f), Some(sha)) = (&a.file, &a.sha256) {
            let (got, size) = crate::digest::sha256_file(f).ok()?;
            if &got != sha || size != a.size {
                return None;
            }
        }
    }
    Some(arts)
}

/// Resolve, copy and record every artifact of a finished build, then move
/// the result into `<store>/<key>` atomically. Returns the artifacts.
pub fn save(
    recipe: &str,
    root: &Root,
    patterns: &[String],
    store: &Path,
    key: &str,
) -> Result<Vec<Artifact>, SandboxError> {
    let io_err = |what: &str, path: &Path, source: io::Error| SandboxError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(store).map_err(|e| io_err("creating the artifact store", store, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{key}-"))
        .tempdir_in(store)
        .map_err(|e| io_err("creating a directory in the artifact store", store, e))?;
    std::fs::create_dir(tmp.path().join("files"))
        .map_err(|e| io_err("creating a directory in the artifact store", tmp.path(), e))?;
    let mut records = BTreeMap::new();
    for pat in patterns {
        let bad = |reason: String| SandboxError::BadArtifact {
            recipe: recipe.to_string(),
            artifact: pat.clone(),
            reason,
        };
        let paths = expand(root, pat).map_err(|r| match r {
            Refused::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                SandboxError::MissingArtifact {
                    recipe: recipe.to_string(),
                    artifact: pat.clone(),
                }
            }
            r => bad(r.to_string()),
        })?;
        if paths.is_empty() {
            return Err(SandboxError::MissingArtifact {
                recipe: recipe.to_string(),
                artifact: pat.clone(),
            });
        }
        for p in paths {
            collect(root, &p, tmp.path(), &mut records).map_err(|r| bad(r.to_string()))?;
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        key: key.to_string(),
        artifacts: records.into_values().collect(),
    };
    let json = serde_json::to_value(&manifest).expect("manifest serializes");
    std::fs::write(
        tmp.path().join(MANIFEST),
        crate::json::to_canonical_pretty(&json),
    )
    .map_err(|e| io_err("writing the artifact manifest", tmp.path(), e))?;
    let dest = store.join(key);
    let staged: PathBuf = tmp.keep();
    if let Some(first) = load(&dest, key) {
        // The same stage finished first elsewhere (an identical stage of
        // another image, or another build on this cache): its result may be
        // being read right now, so it stays and this one is dropped.
        let _ = std::fs::remove_dir_all(&staged);
        return Ok(first);
    }
    if dest.exists() {
        // A stale or damaged result nobody can reuse: moved aside, then removed.
        let aside = store.join(format!(".stale-{key}-{}", std::process::id()));
        if std::fs::rename(&dest, &aside).is_ok() {
            let _ = std::fs::remove_dir_all(&aside);
        }
    }
    if let Err(e) = std::fs::rename(&staged, &dest) {
        let _ = std::fs::remove_dir_all(&staged);
        if load(&dest, key).is_none() {
            return Err(io_err(
                "moving the result into the artifact store",
                &dest,
                e,
            ));
        }
    }
    to_artifacts(&manifest, &dest).ok_or_else(|| SandboxError::Io {
        what: "reading back the artifact manifest".into(),
        path: dest.clone(),
        source: io::Error::other("inconsistent manifest"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(dir: &Path, content: &[u8]) -> Root {
        std::fs::create_dir_all(dir.join("out")).unwrap();
        std::fs::write(dir.join("out/app"), content).unwrap();
        Root::open(dir).unwrap()
    }

    #[test]
    fn a_second_identical_result_leaves_the_first_in_place() {
        let t = tempfile::tempdir().unwrap();
        let store = t.path().join("stages");
        let pats = vec!["/out/app".to_string()];
        let a = save(
            "r",
            &root_with(&t.path().join("a"), b"one"),
            &pats,
            &store,
            "k",
        )
        .unwrap();
        let file = a[0].file.clone().expect("a file artifact has its content");
        // An identical stage finishing while the first result is being read:
        // the file the reader holds by path must stay where it is.
        let held = std::fs::File::open(&file).unwrap();
        let b = save(
            "r",
            &root_with(&t.path().join("b"), b"one"),
            &pats,
            &store,
            "k",
        )
        .unwrap();
        assert_eq!(a, b);
        assert!(
            file.exists(),
            "the first result was replaced under its reader"
        );
        drop(held);
        assert_eq!(
            std::fs::read_dir(&store).unwrap().count(),
            1,
            "nothing left aside"
        );
    }

    #[test]
    fn a_damaged_result_is_replaced() {
        let t = tempfile::tempdir().unwrap();
        let store = t.path().join("stages");
        let pats = vec!["/out/app".to_string()];
        std::fs::create_dir_all(store.join("k")).unwrap();
        std::fs::write(store.join("k").join(MANIFEST), b"{not json").unwrap();
        let a = save(
            "r",
            &root_with(&t.path().join("a"), b"two"),
            &pats,
            &store,
            "k",
        )
        .unwrap();
        assert_eq!(load(&store.join("k"), "k"), Some(a));
    }
}
