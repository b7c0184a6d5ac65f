//! Byte-code (`.pyc`) files written while the scripts ran, made
//! deterministic.
//!
//! An explicit compile (`py3compile`, `py_compile`, `compileall`) honours
//! `SOURCE_DATE_EPOCH` and writes hash-based files (PEP 552). A module
//! *imported* by a script (python3's postinst imports `debpython`) is cached
//! by the import system, which ignores it and writes a timestamp-based file:
//! a 16-byte header (magic, flags word 0, the source's mtime and its size,
//! both little-endian `u32`) and the marshalled code. The mtime is the
//! moment the source was unpacked or written, so the bytes differ per
//! build.
//!
//! Such a file is rewritten, never dropped: its mtime field becomes the
//! mtime the source has **in the image** (the layer rule: clamped to
//! `SOURCE_DATE_EPOCH` for a packaged file, `SOURCE_DATE_EPOCH` for a file
//! the scripts wrote, as every configuration-layer entry), and its size
//! field the source's size mod 2^32. Python then finds it up to date, as
//! `import` would have written it in the image. Only a file that is current
//! at the end of the run is rewritten (its header matches the source as it
//! is then, as Python checks it); a stale one, or one whose source is not
//! in the image (`__pycache__/X.tag.pyc` without `../X.py`, symlinks
//! followed as `stat` does; or only in the toolset), stays an error.
//!
//! Why not convert it to a hash-based file: the hash is CPython's keyed
//! SipHash of the source (`_imp.source_hash`, keyed with the interpreter's
//! magic number; the SipHash variant is an interpreter internal that has
//! changed between releases). The mtime and size fields are the format's
//! documented part (PEP 3147, PEP 552), the same for every version.
//!
//! The marshalled body is left as the interpreter wrote it: the same
//! interpreter compiling the same source in the same root writes the same
//! bytes (measured: two configure runs of python3 give identical files).

use super::tree::{Obj, ObjKind};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The header's length: magic, flags, mtime, size.
pub const HEADER: usize = 16;

/// What the configured root looks like, for [`fix`].
pub struct Root<'a> {
    /// The root directory.
    pub dir: &'a Path,
    /// Its snapshot after the scripts ran.
    pub after: &'a BTreeMap<String, Obj>,
    /// Paths the scripts created or changed (sorted): the configuration
    /// layer gives them `SOURCE_DATE_EPOCH`.
    pub changed: &'a [String],
    /// Toolset paths the image does not ship.
    pub ignored: &'a BTreeSet<String>,
    pub source_date_epoch: u64,
}

/// For a changed `.pyc` file (relative `path`): `Ok(None)` when it is
/// deterministic as it is (hash-based, or not byte-code), the rewritten
/// bytes of a timestamp-based one, or why it cannot be made deterministic.
pub fn fix(root: &Root<'_>, path: &str) -> Result<Option<Vec<u8>>, String> {
    if !path.ends_with(".pyc") {
        return Ok(None);
    }
    let file = root.dir.join(path);
    let mut bytes = Vec::new();
    std::fs::File::open(&file)
        .and_then(|f| f.take(8).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() < 8 || bytes[4..8] != [0, 0, 0, 0] {
        return Ok(None);
    }
    let stamp = "a timestamp-based .pyc (written by an import, which ignores SOURCE_DATE_EPOCH)";
    let source = source_of(path).ok_or_else(|| {
        format!("{stamp} that is not named as a cached module (X.py -> __pycache__/X.<tag>.pyc)")
    })?;
    let missing = || format!("{stamp} whose source /{source} is not in the image");
    let real = resolve(root.after, &source).ok_or_else(missing)?;
    let obj = &root.after[&real];
    if obj.kind != ObjKind::File || root.ignored.contains(&real) {
        return Err(missing());
    }
    let md = root
        .dir
        .join(&real)
        .symlink_metadata()
        .map_err(|e| format!("cannot read its source /{real}: {e}"))?;
    let now = (u64::try_from(md.mtime()).unwrap_or(0), md.size());
    let in_image = if root.changed.binary_search(&real).is_ok() {
        root.source_date_epoch
    } else {
        now.0.min(root.source_date_epoch)
    };
    bytes.clear();
    std::fs::File::open(&file)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read it: {e}"))?;
    check(&bytes)?;
    if !header_matches(&bytes, now.0, now.1) {
        return Err(format!(
            "{stamp} that is stale: it was compiled from another version of /{source} than the one the scripts left"
        ));
    }
    rewrite_header(&mut bytes, in_image, now.1)?;
    Ok(Some(bytes))
}

/// A timestamp-based header's `(mtime, size)` (each mod 2^32), or `None`
/// for a short file or a hash-based one.
fn header_of(b: &[u8]) -> Option<(u64, u64)> {
    if b.len() < HEADER || b[4..8] != [0, 0, 0, 0] {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Some((word(8).into(), word(12).into()))
}

/// As Python compares them: `(mtime, size)` of the source against the
/// header, each mod 2^32.
pub fn header_matches(b: &[u8], mtime: u64, size: u64) -> bool {
    header_of(b) == Some((mtime & 0xFFFF_FFFF, size & 0xFFFF_FFFF))
}

/// Set a timestamp-based header's mtime and size fields (each mod 2^32,
/// as CPython packs them); the magic, flags and body are kept. An error for
/// a file too short to hold a header or not byte-code (no `\r\n` in the
/// magic); a hash-based file is left alone.
pub fn rewrite_header(b: &mut [u8], mtime: u64, size: u64) -> Result<(), String> {
    check(b)?;
    if b[4..8] != [0, 0, 0, 0] {
        return Ok(());
    }
    b[8..12].copy_from_slice(&((mtime & 0xFFFF_FFFF) as u32).to_le_bytes());
    b[12..16].copy_from_slice(&((size & 0xFFFF_FFFF) as u32).to_le_bytes());
    Ok(())
}

/// Long enough for a header, and Python's magic number (`\r\n` last).
fn check(b: &[u8]) -> Result<(), String> {
    if b.len() < HEADER {
        return Err(format!(
            "a truncated .pyc ({} bytes; its header is {HEADER})",
            b.len()
        ));
    }
    if b[2..4] != *b"\r\n" {
        return Err("a .pyc without Python's magic number".into());
    }
    Ok(())
}

/// The source of a byte-code file, as `importlib.util.source_from_cache`
/// finds it: `d/__pycache__/X.<tag>[.opt-N].pyc` -> `d/X.py`; a legacy
/// `d/X.pyc` -> `d/X.py`.
pub fn source_of(path: &str) -> Option<String> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let stem = name.strip_suffix(".pyc")?;
    let join = |d: &str, f: &str| {
        if d.is_empty() {
            f.to_string()
        } else {
            format!("{d}/{f}")
        }
    };
    let cache_parent = match dir.rsplit_once('/') {
        Some((p, "__pycache__")) => Some(p),
        None if dir == "__pycache__" => Some(""),
        _ => None,
    };
    match cache_parent {
        Some(parent) => {
            let dots = name.matches('.').count();
            let base = name.split('.').next().unwrap_or("");
            let opt_ok = dots == 2
                || (dots == 3
                    && name.rsplit('.').nth(1).is_some_and(|o| {
                        o.strip_prefix("opt-")
                            .is_some_and(|l| l.chars().all(|c| c.is_ascii_alphanumeric()))
                    }));
            (opt_ok && !base.is_empty()).then(|| join(parent, &format!("{base}.py")))
        }
        None => (!stem.is_empty()).then(|| join(dir, &format!("{stem}.py"))),
    }
}

/// The real path of `path` in the snapshot, following symlinks as `stat`
/// does (an absolute target is relative to the root, `..` stops at the
/// root); `None` when something is missing or a loop.
pub fn resolve(after: &BTreeMap<String, Obj>, path: &str) -> Option<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => cur.push(c),
        }
        match &after.get(&cur.join("/"))?.kind {
            ObjKind::Dir => {}
            ObjKind::Symlink(t) => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                cur.pop();
                if t.starts_with('/') {
                    cur.clear();
                }
                todo.extend(
                    t.split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            ObjKind::File | ObjKind::Other if todo.is_empty() => {}
            ObjKind::File | ObjKind::Other => return None,
        }
    }
    (!cur.is_empty()).then(|| cur.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timestamp-based header (Python 3.11's magic) and a body.
    fn pyc(mtime: u32, size: u32) -> Vec<u8> {
        let mut b = vec![0xa7, 0x0d, b'\r', b'\n', 0, 0, 0, 0];
        b.extend(mtime.to_le_bytes());
        b.extend(size.to_le_bytes());
        b.extend(b"\xe3body");
        b
    }

    #[test]
    fn rewrite_sets_mtime_and_size_mod_2_32_and_keeps_the_rest() {
        let mut b = pyc(1_767_000_000, 10);
        rewrite_header(&mut b, 1_735_689_600, 4242).unwrap();
        assert_eq!(&b[..8], &[0xa7, 0x0d, b'\r', b'\n', 0, 0, 0, 0]);
        assert_eq!(&b[8..12], &1_735_689_600u32.to_le_bytes());
        assert_eq!(&b[12..16], &4242u32.to_le_bytes());
        assert_eq!(&b[16..], b"\xe3body");
        assert!(header_matches(&b, 1_735_689_600, 4242));
        // Past 2^32, as CPython packs them.
        rewrite_header(&mut b, (1 << 32) + 5, (1 << 32) + 7).unwrap();
        assert_eq!(&b[8..16], &[5, 0, 0, 0, 7, 0, 0, 0]);
        assert!(header_matches(&b, (1 << 32) + 5, 7));
        // Hash-based: untouched.
        let mut h = pyc(1, 2);
        h[4] = 3;
        let before = h.clone();
        rewrite_header(&mut h, 9, 9).unwrap();
        assert_eq!(h, before);
        // Short or not byte-code.
        assert!(rewrite_header(&mut pyc(1, 2)[..12].to_vec(), 0, 0).is_err());
        let mut x = pyc(1, 2);
        x[2] = b'x';
        assert!(rewrite_header(&mut x, 0, 0).is_err());
    }

    #[test]
    fn source_of_follows_pep_3147() {
        let s = |p: &str| source_of(p);
        assert_eq!(
            s("usr/share/python3/debpython/__pycache__/files.cpython-311.pyc").as_deref(),
            Some("usr/share/python3/debpython/files.py")
        );
        assert_eq!(
            s("a/__pycache__/m.cpython-311.opt-1.pyc").as_deref(),
            Some("a/m.py")
        );
        assert_eq!(s("__pycache__/m.cpython-311.pyc").as_deref(), Some("m.py"));
        assert_eq!(s("a/m.pyc").as_deref(), Some("a/m.py"));
        assert_eq!(s("a/__pycache__/m.pyc"), None);
        assert_eq!(s("a/__pycache__/m.cpython-311.x.pyc"), None);
        assert_eq!(s("a/__pycache__/m.a.b.c.pyc"), None);
        assert_eq!(s("a/m.py"), None);
    }

    fn obj(kind: ObjKind) -> Obj {
        Obj {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            ino: 0,
            ctime: (0, 0),
        }
    }

    #[test]
    fn resolve_follows_symlinks_within_the_root() {
        let after: BTreeMap<String, Obj> = [
            ("usr", obj(ObjKind::Dir)),
            ("usr/lib", obj(ObjKind::Dir)),
            ("usr/lib/m.py", obj(ObjKind::File)),
            ("lib", obj(ObjKind::Symlink("usr/lib".into()))),
            ("usr/lib/abs.py", obj(ObjKind::Symlink("/lib/m.py".into()))),
            (
                "usr/lib/rel.py",
                obj(ObjKind::Symlink("../lib/m.py".into())),
            ),
            (
                "usr/lib/up.py",
                obj(ObjKind::Symlink("../../../../lib/m.py".into())),
            ),
            ("usr/lib/loop.py", obj(ObjKind::Symlink("loop.py".into()))),
            (
                "usr/lib/gone.py",
                obj(ObjKind::Symlink("nothere.py".into())),
            ),
        ]
        .into_iter()
        .map(|(p, o)| (p.to_string(), o))
        .collect();
        for p in [
            "usr/lib/m.py",
            "lib/m.py",
            "lib/abs.py",
            "usr/lib/rel.py",
            "lib/up.py",
        ] {
            assert_eq!(resolve(&after, p).as_deref(), Some("usr/lib/m.py"), "{p}");
        }
        assert_eq!(resolve(&after, "usr/lib/loop.py"), None);
        assert_eq!(resolve(&after, "usr/lib/gone.py"), None);
        assert_eq!(resolve(&after, "usr/lib/m.py/x"), None);
    }

    #[test]
    fn fix_rewrites_a_current_pyc_and_refuses_a_stale_or_orphaned_one() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        std::fs::create_dir_all(dir.join("lib/__pycache__")).unwrap();
        std::fs::write(dir.join("lib/m.py"), b"x = 1\n").unwrap();
        let md = std::fs::metadata(dir.join("lib/m.py")).unwrap();
        let current = pyc(md.mtime() as u32, 6);
        let p = "lib/__pycache__/m.cpython-311.pyc";
        std::fs::write(dir.join(p), &current).unwrap();
        let file = |size| Obj {
            size,
            ..obj(ObjKind::File)
        };
        let after: BTreeMap<String, Obj> = [
            ("lib".to_string(), obj(ObjKind::Dir)),
            ("lib/__pycache__".to_string(), obj(ObjKind::Dir)),
            ("lib/m.py".to_string(), file(6)),
            (p.to_string(), file(current.len() as u64)),
        ]
        .into_iter()
        .collect();
        let sde = 1_000;
        let (none, ignored) = (Vec::new(), BTreeSet::new());
        let root = |changed| Root {
            dir,
            after: &after,
            changed,
            ignored: &ignored,
            source_date_epoch: sde,
        };
        // A packaged source: its mtime clamped (here past SDE, so SDE).
        let out = fix(&root(&none), p).unwrap().unwrap();
        assert!(header_matches(&out, sde, 6));
        assert_eq!(&out[16..], &current[16..]);
        // A source older than SDE keeps its mtime.
        let old = std::fs::File::options()
            .write(true)
            .open(dir.join("lib/m.py"))
            .unwrap();
        old.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(500))
            .unwrap();
        std::fs::write(dir.join(p), pyc(500, 6)).unwrap();
        let out = fix(&root(&none), p).unwrap().unwrap();
        assert!(header_matches(&out, 500, 6));
        // A source the scripts wrote gets SDE.
        let changed = vec!["lib/m.py".to_string()];
        let out = fix(&root(&changed), p).unwrap().unwrap();
        assert!(header_matches(&out, sde, 6));
        // Stale: compiled from another version.
        std::fs::write(dir.join(p), pyc(499, 6)).unwrap();
        let e = fix(&root(&none), p).unwrap_err();
        assert!(e.contains("stale"), "{e}");
        // Orphaned: no source.
        let orphan = "lib/__pycache__/gone.cpython-311.pyc";
        std::fs::write(dir.join(orphan), pyc(1, 1)).unwrap();
        let e = fix(&root(&none), orphan).unwrap_err();
        assert!(e.contains("/lib/gone.py is not in the image"), "{e}");
        // Hash-based: as it is.
        let mut h = pyc(0, 0);
        h[4] = 1;
        std::fs::write(dir.join(p), &h).unwrap();
        assert_eq!(fix(&root(&none), p).unwrap(), None);
    }
}
