//! The first difference between two tar streams, read side by side.
//!
//! Both archives are streamed entry by entry ([`tar::Archive`] over any
//! reader, e.g. [`crate::layer::open_blob`]); nothing is unpacked to disk and
//! contents are hashed, never held in memory. For the first entry that
//! differs, every attribute is compared: entry type, link target, size,
//! content (sha256), mode, uid, gid, user and group names, mtime, and the
//! raw header bytes as a last resort. When the paths at one position differ,
//! the rest of both archives' headers is read to tell an entry present on
//! one side only from a different order.

use super::report::Field;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{self, Read};

/// The first differing entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryDifference {
    /// 0-based position of the entry in both streams.
    pub position: u64,
    /// The entry's path (side a's when the paths differ).
    pub path: String,
    pub field: Field,
    pub a: Value,
    pub b: Value,
    /// Other attributes of the same entry that differ too.
    pub also: Vec<Field>,
    /// One sentence for people.
    pub detail: String,
}

/// The result of [`diff_tars`].
#[derive(Debug, Clone, PartialEq)]
pub struct TarOutcome {
    /// Entries read from side a (all of them when there is no difference).
    pub entries: u64,
    pub difference: Option<EntryDifference>,
}

/// Everything compared about one entry.
struct Facts {
    path: String,
    kind: String,
    link: Option<String>,
    size: u64,
    sha256: String,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    mtime: u64,
    header: Vec<u8>,
}

fn entry_path<R: Read>(e: &tar::Entry<'_, R>) -> String {
    let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    match p.trim_end_matches('/') {
        "" => p,
        t => t.to_string(),
    }
}

fn kind_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file".into(),
        tar::EntryType::Directory => "directory".into(),
        tar::EntryType::Symlink => "symlink".into(),
        tar::EntryType::Link => "hardlink".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "fifo".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn facts<R: Read>(mut e: tar::Entry<'_, R>) -> io::Result<Facts> {
    let path = entry_path(&e);
    let h = e.header().clone();
    let link = e
        .link_name_bytes()
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    let uname = h
        .username_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let gname = h
        .groupname_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let (sha256, _) = crate::digest::sha256_reader(&mut e)?;
    Ok(Facts {
        path,
        kind: kind_name(h.entry_type()),
        link,
        size: e.size(),
        sha256: format!("sha256:{sha256}"),
        mode: h.mode()?,
        uid: h.uid()?,
        gid: h.gid()?,
        uname,
        gname,
        mtime: h.mtime()?,
        header: h.as_bytes().to_vec(),
    })
}

fn octal(m: u32) -> Value {
    json!(format!("{:04o}", m & 0o7777))
}

/// Every attribute of two same-path entries that differs, first one first.
fn compare(a: &Facts, b: &Facts) -> Vec<(Field, Value, Value)> {
    let mut v = Vec::new();
    if a.kind != b.kind {
        v.push((Field::Type, json!(a.kind), json!(b.kind)));
    }
    if a.link != b.link {
        v.push((Field::Link, json!(a.link), json!(b.link)));
    }
    if a.sha256 != b.sha256 {
        v.push((Field::Content, json!(a.sha256), json!(b.sha256)));
    }
    if a.size != b.size {
        v.push((Field::Size, json!(a.size), json!(b.size)));
    }
    if a.mode != b.mode {
        v.push((Field::Mode, octal(a.mode), octal(b.mode)));
    }
    if a.uid != b.uid {
        v.push((Field::Uid, json!(a.uid), json!(b.uid)));
    }
    if a.gid != b.gid {
        v.push((Field::Gid, json!(a.gid), json!(b.gid)));
    }
    if a.uname != b.uname {
        v.push((Field::Uname, json!(a.uname), json!(b.uname)));
    }
    if a.gname != b.gname {
        v.push((Field::Gname, json!(a.gname), json!(b.gname)));
    }
    if a.mtime != b.mtime {
        v.push((Field::Mtime, json!(a.mtime), json!(b.mtime)));
    }
    if v.is_empty()
        && let Some(i) = (0..512).find(|&i| a.header.get(i) != b.header.get(i))
    {
        v.push((
            Field::Header,
            json!(format!(
                "byte {i} = {:#04x}",
                a.header.get(i).copied().unwrap_or(0)
            )),
            json!(format!(
                "byte {i} = {:#04x}",
                b.header.get(i).copied().unwrap_or(0)
            )),
        ));
    }
    v
}

fn describe(field: Field, f: &Facts, a: &Value, b: &Value) -> String {
    match field {
        Field::Content => format!("the {} {:?} has different bytes in a and b", f.kind, f.path),
        Field::Mode => format!(
            "mode differs: {:?} is {} in a and {} in b",
            f.path,
            a.as_str().unwrap_or_default(),
            b.as_str().unwrap_or_default()
        ),
        other => format!("{} differs for {:?}: a {a}, b {b}", other.name(), f.path),
    }
}

fn rest_paths<R: Read>(first: String, it: tar::Entries<'_, R>) -> io::Result<BTreeSet<String>> {
    let mut s = BTreeSet::from([first]);
    for e in it {
        s.insert(entry_path(&e?));
    }
    Ok(s)
}

/// Compare two tar streams; stops at the first differing entry.
pub fn diff_tars(a: impl Read, b: impl Read) -> io::Result<TarOutcome> {
    let mut ta = tar::Archive::new(a);
    let mut tb = tar::Archive::new(b);
    let mut ea = ta.entries()?;
    let mut eb = tb.entries()?;
    let mut n: u64 = 0;
    loop {
        let x = ea.next().transpose()?;
        let y = eb.next().transpose()?;
        let (x, y) = match (x, y) {
            (None, None) => {
                return Ok(TarOutcome {
                    entries: n,
                    difference: None,
                });
            }
            (Some(x), None) => {
                let p = entry_path(&x);
                return Ok(one_sided(n, p, true));
            }
            (None, Some(y)) => {
                let p = entry_path(&y);
                return Ok(one_sided(n, p, false));
            }
            (Some(x), Some(y)) => (x, y),
        };
        let (px, py) = (entry_path(&x), entry_path(&y));
        if px != py {
            drop((x, y));
            let in_a = rest_paths(px.clone(), ea)?;
            let in_b = rest_paths(py.clone(), eb)?;
            let detail = if !in_b.contains(&px) {
                format!("entry {n}: {px:?} is only in a (b has {py:?} there)")
            } else if !in_a.contains(&py) {
                format!("entry {n}: {py:?} is only in b (a has {px:?} there)")
            } else {
                format!("entry order differs: entry {n} is {px:?} in a and {py:?} in b")
            };
            return Ok(TarOutcome {
                entries: n,
                difference: Some(EntryDifference {
                    position: n,
                    path: px.clone(),
                    field: Field::Order,
                    a: json!(px),
                    b: json!(py),
                    also: Vec::new(),
                    detail,
                }),
            });
        }
        let fx = facts(x)?;
        let fy = facts(y)?;
        let diffs = compare(&fx, &fy);
        if let Some((field, va, vb)) = diffs.first().cloned() {
            let mut detail = describe(field, &fx, &va, &vb);
            if field == Field::Content && fx.size != fy.size {
                detail.push_str(&format!("; size {} vs {} bytes", fx.size, fy.size));
            }
            return Ok(TarOutcome {
                entries: n,
                difference: Some(EntryDifference {
                    position: n,
                    path: fx.path.clone(),
                    field,
                    a: va,
                    b: vb,
                    also: diffs[1..].iter().map(|d| d.0).collect(),
                    detail,
                }),
            });
        }
        n += 1;
    }
}

fn one_sided(n: u64, path: String, in_a: bool) -> TarOutcome {
    let (a, b, side) = if in_a {
        (json!(path), Value::Null, "a")
    } else {
        (Value::Null, json!(path), "b")
    };
    TarOutcome {
        entries: n,
        difference: Some(EntryDifference {
            position: n,
            detail: format!(
                "entry {n}: {path:?} is only in {side} (the other layer ends before it)"
            ),
            path,
            field: Field::Order,
            a,
            b,
            also: Vec::new(),
        }),
    }
}

/// Count the entries of a tar stream (headers only; contents are skipped).
pub fn count_entries(r: impl Read) -> io::Result<u64> {
    let mut t = tar::Archive::new(r);
    let mut n = 0;
    for e in t.entries()? {
        e?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry for [`tar_of`]: path, type, mode, content or link target.
    struct E<'a> {
        path: &'a str,
        kind: tar::EntryType,
        mode: u32,
        data: &'a [u8],
        uid: u64,
        mtime: u64,
    }

    fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
        E {
            path,
            kind: tar::EntryType::Regular,
            mode: 0o644,
            data,
            uid: 0,
            mtime: 100,
        }
    }

    fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(0);
            h.set_mtime(e.mtime);
            match e.kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, e.path, std::str::from_utf8(e.data).unwrap())
                        .unwrap();
                }
                _ => {
                    h.set_size(e.data.len() as u64);
                    b.append_data(&mut h, e.path, e.data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn diff(a: &[E<'_>], b: &[E<'_>]) -> TarOutcome {
        diff_tars(&tar_of(a)[..], &tar_of(b)[..]).unwrap()
    }

    #[test]
    fn identical_tars_have_no_difference() {
        let t = [file("a", b"1"), file("b", b"2")];
        let o = diff(&t, &t);
        assert_eq!(o.entries, 2);
        assert!(o.difference.is_none());
    }

    #[test]
    fn content_difference_names_path_and_both_digests() {
        let o = diff(
            &[file("a", b"1"), file("b", b"22")],
            &[file("a", b"1"), file("b", b"23")],
        );
        let d = o.difference.unwrap();
        assert_eq!(d.path, "b");
        assert_eq!(d.field, Field::Content);
        assert_eq!(d.position, 1);
        assert_eq!(
            d.a,
            json!(format!("sha256:{}", crate::digest::sha256_hex(b"22")))
        );
        assert!(d.detail.contains("different bytes"), "{}", d.detail);
        assert!(d.also.is_empty());
    }

    #[test]
    fn size_difference_comes_with_content() {
        let d = diff(&[file("a", b"1")], &[file("a", b"12")])
            .difference
            .unwrap();
        assert_eq!(d.field, Field::Content);
        assert_eq!(d.also, vec![Field::Size]);
        assert!(d.detail.contains("size 1 vs 2 bytes"), "{}", d.detail);
    }

    #[test]
    fn mode_difference_in_octal() {
        let mut x = file("usr/bin/tool", b"x");
        x.mode = 0o4755;
        let mut y = file("usr/bin/tool", b"x");
        y.mode = 0o755;
        let d = diff(&[x], &[y]).difference.unwrap();
        assert_eq!(d.field, Field::Mode);
        assert_eq!(d.a, json!("4755"));
        assert_eq!(d.b, json!("0755"));
    }

    #[test]
    fn owner_and_mtime() {
        let mut y = file("f", b"x");
        y.uid = 1000;
        y.mtime = 5;
        let d = diff(&[file("f", b"x")], &[y]).difference.unwrap();
        assert_eq!(d.field, Field::Uid);
        assert_eq!(d.also, vec![Field::Mtime]);
        assert_eq!((d.a, d.b), (json!(0), json!(1000)));
    }

    #[test]
    fn link_target_and_type() {
        let l = |t: &'static str| E {
            path: "bin",
            kind: tar::EntryType::Symlink,
            mode: 0o777,
            data: t.as_bytes(),
            uid: 0,
            mtime: 100,
        };
        let d = diff(&[l("usr/bin")], &[l("usr/sbin")]).difference.unwrap();
        assert_eq!(d.field, Field::Link);
        assert_eq!((d.a, d.b), (json!("usr/bin"), json!("usr/sbin")));
        let d = diff(&[l("usr/bin")], &[file("bin", b"")])
            .difference
            .unwrap();
        assert_eq!(d.field, Field::Type);
        assert_eq!((d.a, d.b), (json!("symlink"), json!("file")));
    }

    #[test]
    fn directory_trailing_slash_is_not_a_path_difference() {
        let dir = |m: u32| E {
            path: "etc/",
            kind: tar::EntryType::Directory,
            mode: m,
            data: b"",
            uid: 0,
            mtime: 1,
        };
        let d = diff(&[dir(0o755)], &[dir(0o700)]).difference.unwrap();
        assert_eq!(d.path, "etc");
        assert_eq!(d.field, Field::Mode);
    }

    #[test]
    fn missing_entry_and_order() {
        let d = diff(
            &[file("a", b""), file("b", b""), file("c", b"")],
            &[file("a", b""), file("c", b"")],
        )
        .difference
        .unwrap();
        assert_eq!(d.field, Field::Order);
        assert!(d.detail.contains("\"b\" is only in a"), "{}", d.detail);

        let d = diff(
            &[file("a", b""), file("b", b"")],
            &[file("b", b""), file("a", b"")],
        )
        .difference
        .unwrap();
        assert!(d.detail.contains("order differs"), "{}", d.detail);

        let d = diff(&[file("a", b"")], &[file("a", b""), file("z", b"")])
            .difference
            .unwrap();
        assert_eq!((d.a, d.b), (Value::Null, json!("z")));
        assert!(d.detail.contains("only in b"), "{}", d.detail);
    }

    #[test]
    fn long_names_compare_by_full_path() {
        let long = format!("{}/file", "d".repeat(150));
        let o = diff(&[file(&long, b"1")], &[file(&long, b"2")]);
        assert_eq!(o.difference.unwrap().path, long);
    }

    #[test]
    fn counts_entries() {
        let t = tar_of(&[file("a", b"1"), file("b", b"2"), file("c", b"")]);
        assert_eq!(count_entries(&t[..]).unwrap(), 3);
    }
}
