//! Tests of the streaming layer writer against the algorithm it replaced.
//!
//! `old_normalize` is the in-memory `normalize` (BTreeMap by path, then
//! `fix_hardlinks`) as it was before layers were sorted on disk: the oracle.
//! Small layers written through [`super::EntrySpool`] (with tiny runs, so
//! the merge has work to do) must come out byte-identical to it.

use super::*;
use proptest::prelude::*;

/// Sort, deduplicate and complete a layer's entries.
///
/// * identical duplicates (same type, mode, owner, content) collapse into one;
///   different ones are a [`LayerError::Conflict`];
/// * missing parent directories are added (0755, root, `mtime`);
/// * an entry below a symlink of the same layer, or below one of
///   `lower_symlinks`, is rejected (it would be written through the link);
/// * hard links point at the first path (in sorted order) of their group.
pub(super) fn old_normalize(
    entries: Vec<Entry>,
    lower_symlinks: &BTreeSet<String>,
    mtime: u64,
) -> Result<Vec<Entry>, LayerError> {
    let mut by_path: BTreeMap<String, Entry> = BTreeMap::new();
    for e in entries {
        match by_path.get(&e.path) {
            None => {
                by_path.insert(e.path.clone(), e);
            }
            Some(prev) => {
                if let Some(what) = difference(prev, &e) {
                    return Err(LayerError::Conflict {
                        path: e.path.clone(),
                        first: prev.origin.clone(),
                        second: e.origin.clone(),
                        what,
                    });
                }
            }
        }
    }
    // Symlinks and writes through them.
    let symlinks: BTreeSet<&str> = by_path
        .values()
        .filter(|e| matches!(e.kind, Kind::Symlink(_)))
        .map(|e| e.path.as_str())
        .collect();
    for e in by_path.values() {
        let mut p = e.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if symlinks.contains(parent) || lower_symlinks.contains(parent) {
                return Err(LayerError::Hostile {
                    origin: e.origin.clone(),
                    entry: e.path.clone(),
                    reason: format!(
                        "its parent {parent:?} is a symlink; writing through it could escape the image root"
                    ),
                });
            }
            if let Some(pe) = by_path.get(parent)
                && pe.kind != Kind::Dir
            {
                return Err(LayerError::Hostile {
                    origin: e.origin.clone(),
                    entry: e.path.clone(),
                    reason: format!("its parent {parent:?} is not a directory"),
                });
            }
            p = parent;
        }
    }
    // Missing parents.
    let mut missing = BTreeSet::new();
    for path in by_path.keys() {
        let mut p = path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !by_path.contains_key(parent) {
                missing.insert(parent.to_string());
            }
            p = parent;
        }
    }
    for m in missing {
        by_path.insert(m.clone(), Entry::dir(&m, mtime, "imgforge"));
    }
    let mut out: Vec<Entry> = by_path.into_values().collect();
    out.sort_by(|a, b| sort_key(&a.path).cmp(&sort_key(&b.path)));
    old_fix_hardlinks(&mut out)?;
    Ok(out)
}

/// Make every hard-link group point at its first member in sorted order,
/// with that member carrying the content: extraction needs the target first.
fn old_fix_hardlinks(entries: &mut [Entry]) -> Result<(), LayerError> {
    let index: BTreeMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    // group root (content holder) -> members
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Kind::Hardlink(t) = &e.kind {
            let Some(&ti) = index.get(t) else {
                return Err(LayerError::Hostile {
                    origin: e.origin.clone(),
                    entry: e.path.clone(),
                    reason: format!("hard link to {t:?}, which is not in the layer"),
                });
            };
            if entries[ti].kind != Kind::File {
                return Err(LayerError::Hostile {
                    origin: e.origin.clone(),
                    entry: e.path.clone(),
                    reason: format!("hard link to {t:?}, which is not a regular file"),
                });
            }
            groups.entry(ti).or_default().push(i);
        }
    }
    for (holder, members) in groups {
        let first = *members
            .iter()
            .chain(std::iter::once(&holder))
            .min()
            .expect("non-empty");
        if first == holder {
            continue;
        }
        // Move the content to `first`; everything else links to it.
        let content = entries[holder].clone();
        let first_path = entries[first].path.clone();
        let holder_path = content.path.clone();
        entries[first] = Entry {
            path: first_path.clone(),
            ..content
        };
        for &m in members.iter().chain(std::iter::once(&holder)) {
            if m != first {
                let e = &mut entries[m];
                e.kind = Kind::Hardlink(first_path.clone());
                e.size = 0;
                e.content = Content::None;
                if m == holder {
                    e.path = holder_path.clone();
                }
            }
        }
    }
    Ok(())
}

fn oracle_blob(
    entries: Vec<Entry>,
    lower: &BTreeSet<String>,
) -> Result<(LayerBlob, Vec<String>), LayerError> {
    let norm = old_normalize(entries, lower, 7)?;
    let symlinks = norm
        .iter()
        .filter(|e| matches!(e.kind, Kind::Symlink(_)))
        .map(|e| e.path.clone())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let blob = write_layer(&norm, &opts(dir.path()))?;
    Ok((blob, symlinks))
}

fn opts(dir: &Path) -> WriteOptions {
    WriteOptions {
        blobs_dir: dir.to_path_buf(),
        compression: Compression::Gzip(6),
    }
}

/// Through the spool, runs of `run` bytes; the blob dir must end up with
/// the blob alone, or nothing on failure.
fn spooled_blob(
    entries: Vec<Entry>,
    lower: &BTreeSet<String>,
    run: usize,
) -> Result<(LayerBlob, Vec<String>), LayerError> {
    let spool_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sp = EntrySpool::new(spool_dir.path())
        .unwrap()
        .with_run_bytes(run);
    for e in entries {
        sp.push(e).unwrap();
    }
    let r = write_spooled(sp, lower, 7, &opts(dir.path()), None);
    let left = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(left, usize::from(r.is_ok()), "files left in the blob dir");
    r
}

fn file(path: &str, data: &str, origin: &str) -> Entry {
    Entry::bytes(path, data.as_bytes().to_vec(), 0o644, 3, origin)
}

fn link(path: &str, target: &str, origin: &str) -> Entry {
    Entry {
        kind: Kind::Hardlink(target.into()),
        mode: 0o644,
        ..Entry::dir(path, 5, origin)
    }
}

fn sample() -> Vec<Entry> {
    vec![
        file("usr/share/doc/b", "bb", "p1"),
        Entry::symlink("usr/lib/x", "y", 2, "p1"),
        link("usr/bin/a", "usr/bin/z", "p1"),
        file("usr/bin/z", "zz", "p1"),
        link("usr/bin/m", "usr/bin/z", "p1"),
        Entry::dir("usr", 1, "p2"),
        file("usr/share/doc/b", "bb", "p2"),
        file("usr-x", "", "p2"),
        file("usr.y/q", "q", "p2"),
        Entry {
            uname: "other".into(),
            mtime: 9,
            ..Entry::dir("usr", 1, "p3")
        },
    ]
}

#[test]
fn spooled_layer_is_byte_identical_to_the_old_algorithm() {
    let lower = BTreeSet::new();
    let old = oracle_blob(sample(), &lower).unwrap();
    for run in [1, 64, 1 << 20] {
        assert_eq!(
            spooled_blob(sample(), &lower, run).unwrap(),
            old,
            "run {run}"
        );
    }
    assert_eq!(normalize_blob(sample(), &lower).unwrap(), old);
}

/// The in-memory `normalize`, now the streaming rules over a sorted `Vec`.
fn normalize_blob(
    entries: Vec<Entry>,
    lower: &BTreeSet<String>,
) -> Result<(LayerBlob, Vec<String>), LayerError> {
    let norm = normalize(entries, lower, 7)?;
    let symlinks = norm
        .iter()
        .filter(|e| matches!(e.kind, Kind::Symlink(_)))
        .map(|e| e.path.clone())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    Ok((write_layer(&norm, &opts(dir.path()))?, symlinks))
}

#[test]
fn duplicates_that_differ_are_refused_naming_both_origins() {
    let e = vec![
        file("etc/a", "one", "pkg-one"),
        file("etc/a", "two", "pkg-two"),
    ];
    let err = spooled_blob(e, &BTreeSet::new(), 1).unwrap_err();
    let t = err.to_string();
    assert!(
        t.contains("pkg-one") && t.contains("pkg-two") && t.contains("content"),
        "{t}"
    );
}

#[test]
fn missing_parents_appear_and_hardlinks_point_at_the_first_member() {
    let e = vec![file("a/b/z", "zz", "p"), link("a/b/c", "a/b/z", "p")];
    let norm = normalize(e, &BTreeSet::new(), 7).unwrap();
    let got: Vec<(&str, &Kind, u64)> = norm
        .iter()
        .map(|e| (e.path.as_str(), &e.kind, e.size))
        .collect();
    let link_to_c = Kind::Hardlink("a/b/c".into());
    assert_eq!(
        got,
        vec![
            ("a", &Kind::Dir, 0),
            ("a/b", &Kind::Dir, 0),
            ("a/b/c", &Kind::File, 2),
            ("a/b/z", &link_to_c, 0),
        ]
    );
    assert_eq!(norm[0].origin, "imgforge");
    assert_eq!(norm[0].mtime, 7);
}

#[test]
fn entries_below_symlinks_are_refused_in_the_spool() {
    let e = vec![
        Entry::symlink("evil", "/etc", 0, "pkg"),
        file("evil/passwd", "x", "pkg"),
    ];
    let err = spooled_blob(e, &BTreeSet::new(), 1).unwrap_err();
    assert!(err.to_string().contains("is a symlink"), "{err}");
    let lower: BTreeSet<String> = ["lib".to_string()].into();
    let err = spooled_blob(vec![file("lib/x", "x", "pkg")], &lower, 1).unwrap_err();
    assert!(err.to_string().contains("is a symlink"), "{err}");
    let e = vec![file("f", "x", "pkg"), file("f/x", "x", "pkg")];
    let err = spooled_blob(e, &BTreeSet::new(), 1).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn hardlinks_to_nothing_or_to_a_directory_are_refused() {
    let err = spooled_blob(vec![link("a", "b", "p")], &BTreeSet::new(), 1).unwrap_err();
    assert!(err.to_string().contains("not in the layer"), "{err}");
    let e = vec![link("a", "d", "p"), file("d/x", "", "p")];
    let err = spooled_blob(e, &BTreeSet::new(), 1).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    let comp = prop::sample::select(vec!["a", "b", "a-b", "a.b", "c"]);
    let path = prop::collection::vec(comp, 1..4).prop_map(|v| v.join("/"));
    let target = prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..3)
        .prop_map(|v| v.join("/"));
    let origin = prop::sample::select(vec!["p1", "p2", "p3"]);
    let mode = prop::sample::select(vec![0o644u32, 0o755]);
    (0..5u8, path, target, origin, mode, 0..3u64).prop_map(|(k, p, t, o, m, x)| {
        let mut e = match k {
            0 | 1 => Entry::bytes(&p, vec![b'x'; x as usize], m, x, o),
            2 => Entry::dir(&p, x, o),
            3 => Entry::symlink(&p, &t, x, o),
            _ => link(&p, &t, o),
        };
        e.mode = if k == 3 { 0o777 } else { m };
        e.uname = ["root", "u1"][(x % 2) as usize].into();
        e
    })
}

/// Mostly valid layers: files at depth 3 (content and mode follow the path,
/// so duplicates from several origins are identical), directories above
/// them, symlinks and hard links to those files sorting before and after.
fn arb_valid() -> impl Strategy<Value = Vec<Entry>> {
    let comp = || prop::sample::select(vec!["a", "b", "a-b", "a.b"]);
    let file = (
        comp(),
        comp(),
        prop::sample::select(vec!["f1", "f2", "f3"]),
        0..3usize,
    );
    let files = prop::collection::vec(file, 1..12);
    let links = prop::collection::vec(
        (
            0..12usize,
            prop::sample::select(vec!["0", "l", "b"]),
            0..4u8,
        ),
        0..5,
    );
    let dirs = prop::collection::vec((comp(), prop::option::of(comp()), 0..3usize), 0..5);
    (files, links, dirs).prop_map(|(files, links, dirs)| {
        let origins = ["p1", "p2", "p3"];
        let mut v = Vec::new();
        let mut paths = Vec::new();
        for (a, b, c, o) in files {
            let p = format!("{a}/{b}/{c}");
            let mode = if c == "f2" { 0o755 } else { 0o644 };
            v.push(Entry::bytes(
                &p,
                p.as_bytes().to_vec(),
                mode,
                o as u64,
                origins[o],
            ));
            paths.push(p);
        }
        for (i, pre, n) in links {
            let t = &paths[i % paths.len()];
            let p = format!("{pre}/q/{n}");
            if n == 3 {
                v.push(Entry::symlink(&format!("{pre}/s"), t, 1, "p1"));
            } else {
                v.push(link(&p, t, origins[i % 3]));
            }
        }
        for (a, b, o) in dirs {
            let p = match b {
                Some(b) => format!("{a}/{b}"),
                None => a.to_string(),
            };
            v.insert(o % (v.len() + 1), Entry::dir(&p, o as u64, origins[o]));
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn valid_spooled_layers_match_the_old_algorithm(
        entries in arb_valid(),
        run in prop::sample::select(vec![1usize, 100, 1 << 20]),
    ) {
        let lower = BTreeSet::new();
        let old = oracle_blob(entries.clone(), &lower);
        let new = spooled_blob(entries.clone(), &lower, run);
        let mem = normalize_blob(entries, &lower);
        match (old, new, mem) {
            (Ok(o), Ok(n), Ok(m)) => {
                prop_assert_eq!(&o, &n);
                prop_assert_eq!(&o, &m);
            }
            (Err(_), Err(_), Err(_)) => {}
            (o, n, m) => prop_assert!(false, "old {:?}\nnew {:?}\nmem {:?}", o.map(|b| b.0.digest), n.map(|b| b.0.digest), m.map(|b| b.0.digest)),
        }
    }


    #[test]
    fn spooled_layers_match_the_old_algorithm(
        entries in prop::collection::vec(arb_entry(), 0..14),
        lower_b in any::<bool>(),
        run in prop::sample::select(vec![1usize, 100, 1 << 20]),
    ) {
        let lower: BTreeSet<String> = if lower_b { ["b".to_string()].into() } else { BTreeSet::new() };
        let old = oracle_blob(entries.clone(), &lower);
        let new = spooled_blob(entries.clone(), &lower, run);
        let mem = normalize_blob(entries, &lower);
        match (old, new, mem) {
            (Ok(o), Ok(n), Ok(m)) => {
                prop_assert_eq!(&o, &n);
                prop_assert_eq!(&o, &m);
            }
            (Err(_), Err(_), Err(_)) => {}
            (o, n, m) => prop_assert!(false, "old {:?}\nnew {:?}\nmem {:?}", o.map(|b| b.0.digest), n.map(|b| b.0.digest), m.map(|b| b.0.digest)),
        }
    }
}
