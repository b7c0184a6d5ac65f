//! Hostile `.deb` files: every case is one synthetic package in a tiny base
//! (`from = "scratch"`, no images), built with `imgforge build`. A rejected
//! package must fail the build naming the package and the entry, leave no
//! `out/` and no staging directory, and create nothing outside the test's
//! temp dir. A positive case checks that unusual but legal entries (setuid,
//! sticky, 0600, hard link, symlink, long names) reach the layer exactly.
//!
//! Cheap: no fixture, no external tool; each build takes well under a second.

use crate::common::{imgforge, run, text};
use crate::debgen::{Deb, T, gz, raw_ar, tar_header, write_ar};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A unique name for a path outside the temp dir that a hostile entry aims at.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("imgforge-hostile-{tag}-{}-{nanos}", std::process::id())
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A tree whose base pins exactly these packages, and a mirror beside it.
struct Case {
    tmp: tempfile::TempDir,
}

impl Case {
    fn new(pins: &[(&str, &str)]) -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let mut base = String::from(
            "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
             [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n[packages]\n",
        );
        for (n, v) in pins {
            base.push_str(&format!("{n} = \"{v}\"\n"));
        }
        std::fs::create_dir_all(tmp.path().join("base")).unwrap();
        std::fs::create_dir_all(tmp.path().join("recipes")).unwrap();
        std::fs::create_dir_all(tmp.path().join("mirror/pool")).unwrap();
        std::fs::write(tmp.path().join("base/base.toml"), base).unwrap();
        Case { tmp }
    }
    fn dir(&self) -> &Path {
        self.tmp.path()
    }
    fn pool(&self) -> PathBuf {
        self.dir().join("mirror/pool")
    }
    /// Write the mirror's `Packages` for these (possibly doctored) files.
    fn index(&self, debs: &[(&Deb, PathBuf)]) {
        let mut index = String::new();
        for (d, p) in debs {
            let bytes = std::fs::read(p).unwrap();
            use sha2::Digest;
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            index.push_str(d.control().trim_end());
            index.push_str(&format!(
                "\nFilename: pool/{}\nSize: {}\nSHA256: {}\n\n",
                p.file_name().unwrap().to_string_lossy(),
                bytes.len(),
                sha
            ));
        }
        std::fs::write(self.dir().join("mirror/Packages"), index).unwrap();
    }
    fn build(&self) -> Output {
        self.build_with(&[])
    }
    fn build_with(&self, extra: &[&str]) -> Output {
        run(imgforge()
            .current_dir(self.dir())
            .env_remove("SOURCE_DATE_EPOCH")
            .args(["build", "recipes", "--mirror", "mirror", "--no-apt"])
            .args(["--out", "out", "--cache", "cache", "--jobs", "2"])
            .args(extra))
    }
    /// Nothing half-done is left in the tree.
    fn assert_clean(&self) {
        assert!(
            !self.dir().join("out").exists(),
            "a failed build created out/"
        );
        for e in std::fs::read_dir(self.dir()).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.starts_with(".imgforge-"), "staging left behind: {n}");
        }
    }
}

/// One package with `extra` entries, in a fresh case.
fn one(name: &str, extra: Vec<T>) -> (Case, Deb, PathBuf) {
    let mut d = Deb::new(name, "1.0");
    for e in extra {
        d = d.entry(e);
    }
    let c = Case::new(&[(name, "1.0")]);
    let p = d.write(&c.pool());
    (c, d, p)
}

/// Build, expect a rejection naming the package and `entry`.
fn rejected(c: &Case, pkg: &str, entry: &str) -> String {
    rejected_with(c, pkg, entry, &[])
}

/// [`rejected`] with extra build arguments.
fn rejected_with(c: &Case, pkg: &str, entry: &str, extra: &[&str]) -> String {
    let o = c.build_with(extra);
    let t = text(&o);
    assert!(
        !o.status.success(),
        "hostile package {pkg} was accepted:\n{t}"
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(pkg),
        "the error does not name the package {pkg}:\n{t}"
    );
    assert!(
        t.contains(entry),
        "the error does not name the entry {entry:?}:\n{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    c.assert_clean();
    t
}

/// Replace (or add) an `ar` member of a `.deb`, keeping the others in order.
fn rewrite_member(deb: &Path, member: &str, bytes: Vec<u8>) {
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let mut a = ar::Archive::new(std::fs::File::open(deb).unwrap());
        while let Some(m) = a.next_entry() {
            let mut m = m.unwrap();
            let name = String::from_utf8(m.header().identifier().to_vec()).unwrap();
            let mut data = Vec::new();
            m.read_to_end(&mut data).unwrap();
            members.push((name, data));
        }
    }
    let mut replaced = false;
    for (n, d) in &mut members {
        if n.starts_with("data.tar") {
            *n = member.to_string();
            *d = bytes.clone();
            replaced = true;
        }
    }
    assert!(replaced);
    let refs: Vec<(&str, Vec<u8>)> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    write_ar(deb, &refs);
}

#[test]
fn hostile_dotdot_entry_is_rejected() {
    let target = unique("dotdot");
    let entry = leak(format!("./../{target}"));
    let (c, d, p) = one("evil-dotdot", vec![T::File(entry, b"pwned", 0o644)]);
    c.index(&[(&d, p)]);
    let t = rejected(&c, "evil-dotdot", &target);
    assert!(t.contains(".."), "{t}");
    let parent = c.dir().parent().unwrap();
    assert!(!parent.join(&target).exists(), "wrote outside the tree");
    assert!(!Path::new("/").join(&target).exists());
}

#[test]
fn hostile_absolute_path_is_normalized() {
    // README: a leading `/` is stripped; the file lands in the layer, never
    // on the host's /etc.
    let name = unique("abs");
    let entry = leak(format!("/etc/{name}"));
    let (c, d, p) = one("evil-abs", vec![T::File(entry, b"layer only", 0o644)]);
    c.index(&[(&d, p)]);
    let o = c.build();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !Path::new("/etc").join(&name).exists(),
        "wrote the host /etc"
    );
    let files = base_layer(&c.dir().join("out"));
    let got = files
        .iter()
        .find(|f| f.path == format!("etc/{name}"))
        .unwrap_or_else(|| panic!("etc/{name} not in the layer: {files:#?}"));
    assert_eq!(got.data, b"layer only");
}

#[test]
fn hostile_write_through_symlink_is_rejected() {
    let target = std::env::temp_dir().join(unique("symlink"));
    let link = leak(target.to_string_lossy().into_owned());
    let (c, d, p) = one(
        "evil-symlink",
        vec![
            T::Symlink("./evil", link),
            T::File("./evil/passwd", b"root::0:0::/:/bin/sh\n", 0o644),
        ],
    );
    c.index(&[(&d, p)]);
    let t = rejected(&c, "evil-symlink", "evil/passwd");
    assert!(t.contains("symlink"), "{t}");
    assert!(!target.exists(), "wrote through the symlink: {target:?}");
}

#[test]
fn hostile_char_device_is_rejected() {
    let (c, d, p) = one("evil-chardev", vec![T::CharDev("./usr/share/evil-null")]);
    c.index(&[(&d, p)]);
    let t = rejected(&c, "evil-chardev", "usr/share/evil-null");
    assert!(t.contains("device"), "{t}");
}

#[test]
fn hostile_colliding_names_are_rejected() {
    let (c, d, p) = one(
        "evil-collide",
        vec![
            T::Dir("./a/", 0o755),
            T::File("./a/b", b"first", 0o644),
            T::File("./a//b", b"second", 0o755),
        ],
    );
    c.index(&[(&d, p)]);
    let t = rejected(&c, "evil-collide", "a//b");
    assert!(t.contains("collide"), "{t}");
}

#[test]
fn hostile_hardlink_outside_the_package_is_rejected() {
    // To a host path (normalized to etc/passwd, which no package ships).
    let (c, d, p) = one(
        "evil-hardlink",
        vec![T::Hardlink("./usr/share/passwd", "/etc/passwd")],
    );
    c.index(&[(&d, p)]);
    let t = rejected(&c, "evil-hardlink", "usr/share/passwd");
    assert!(t.contains("hard link"), "{t}");

    // Upwards out of the root.
    let (c, d, p) = one(
        "evil-hardlink-up",
        vec![T::Hardlink("./usr/share/shadow", "../../etc/shadow")],
    );
    c.index(&[(&d, p)]);
    rejected(&c, "evil-hardlink-up", "usr/share/shadow");
}

#[test]
fn hostile_hardlink_into_another_package_is_rejected() {
    // README: "hard links to paths outside the package" are rejected, even
    // when another package of the same layer ships the target.
    let good = Deb::new("victim", "1.0").entry(T::File("./usr/share/secret", b"s3cret", 0o600));
    let evil = Deb::new("evil-crosslink", "1.0")
        .entry(T::Hardlink("./usr/share/stolen", "./usr/share/secret"));
    let c = Case::new(&[("victim", "1.0"), ("evil-crosslink", "1.0")]);
    let pg = good.write(&c.pool());
    let pe = evil.write(&c.pool());
    c.index(&[(&good, pg), (&evil, pe)]);
    rejected(&c, "evil-crosslink", "usr/share/stolen");
}

#[test]
fn hostile_truncated_archive_is_rejected() {
    // An uncompressed data.tar with a 64 KiB file, cut in its middle.
    static BIG: [u8; 65536] = [7u8; 65536];
    let (c, d, p) = one(
        "evil-truncated",
        vec![T::File("./usr/share/big", &BIG, 0o644)],
    );
    let d = d.compression("");
    let p2 = d.write(&c.pool());
    assert_eq!(p, p2);
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - 40_000).unwrap();
    drop(f);
    c.index(&[(&d, p)]);
    let o = c.build();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("evil-truncated"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    c.assert_clean();
}

#[test]
fn hostile_truncated_compressed_stream_is_rejected() {
    // gzip data.tar cut in the middle of the compressed stream (the ar
    // member is rewritten, so the .deb itself is well formed).
    let mut big = Vec::new();
    for i in 0..200_000u32 {
        big.extend_from_slice(&i.to_le_bytes());
    }
    let big: &'static [u8] = Box::leak(big.into_boxed_slice());
    let (c, d, p) = one("evil-cutgz", vec![T::File("./usr/share/big", big, 0o644)]);
    let data = gz(&crate::debgen::data_tar(&d.entries));
    rewrite_member(&p, "data.tar.gz", data[..data.len() / 2].to_vec());
    c.index(&[(&d, p)]);
    let o = c.build();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("evil-cutgz"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    c.assert_clean();
}

#[test]
fn hostile_bad_compression_stream_is_rejected() {
    let (c, d, p) = one("evil-badxz", vec![]);
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    rewrite_member(&p, "data.tar.xz", garbage);
    c.index(&[(&d, p)]);
    let o = c.build();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("evil-badxz"), "{t}");
    assert!(
        t.contains("data.tar"),
        "the error does not name data.tar:\n{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    c.assert_clean();
}

#[test]
fn hostile_non_utf8_name_is_rejected() {
    let (c, d, p) = one(
        "evil-latin1",
        vec![T::RawFile(b"./usr/share/caf\xe9".to_vec(), b"x")],
    );
    c.index(&[(&d, p)]);
    let t = rejected(&c, "evil-latin1", "usr/share/caf");
    assert!(t.contains("UTF-8"), "{t}");
}

#[test]
fn hostile_decompression_bomb_is_capped() {
    // The CLI's cap is 8 GiB; exercise the same mechanism in-process with a
    // small cap: 4 MiB of zeros (a few KiB gzipped) against a 1 MiB limit.
    static ZEROS: [u8; 4 << 20] = [0u8; 4 << 20];
    let tmp = tempfile::tempdir().unwrap();
    let d = Deb::new("evil-bomb", "1.0").entry(T::File("./usr/share/zeros", &ZEROS, 0o644));
    let p = d.write(tmp.path());
    assert!(std::fs::metadata(&p).unwrap().len() < 64 << 10);
    let limits = imgforge::deb::Limits {
        control_bytes: 1 << 20,
        data_bytes: 1 << 20,
        ..Default::default()
    };
    let control = imgforge::deb::read_control(&p, &limits).unwrap();
    let input = imgforge::layer::package::PackageInput {
        name: "evil-bomb".into(),
        deb: p.clone(),
        control,
    };
    let opts = imgforge::layer::package::PackageOptions {
        source_date_epoch: 0,
        merged_usr: true,
        dpkg_metadata: true,
        limits,
    };
    let err = imgforge::layer::package::package_entries(&input, tmp.path(), &opts)
        .expect_err("a 4 MiB data.tar passed a 1 MiB cap");
    let msg = err.to_string();
    assert!(msg.contains("limit"), "{msg}");
    assert!(msg.contains("evil-bomb"), "{msg}");
}

/// One entry of a layer, read back.
#[derive(Debug)]
pub struct LayerFile {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Every entry of a layer blob, in order.
pub fn read_layer(blob: &Path) -> Vec<LayerFile> {
    let mut a = tar::Archive::new(imgforge::layer::open_blob(blob).unwrap());
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(LayerFile {
            path: path.trim_end_matches('/').to_string(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
        });
    }
    out
}

/// The files of the base image in an output layout: every layer's, a
/// path in an upper layer replacing the same path below.
fn base_layer(out: &Path) -> Vec<LayerFile> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0]["digest"];
    let hex = m.as_str().unwrap().trim_start_matches("sha256:");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let mut files = std::collections::BTreeMap::new();
    for l in manifest["layers"].as_array().unwrap() {
        let l = l["digest"].as_str().unwrap();
        for f in read_layer(
            &out.join("blobs/sha256")
                .join(l.trim_start_matches("sha256:")),
        ) {
            files.insert(f.path.clone(), f);
        }
    }
    files.into_values().collect()
}

#[test]
fn legal_unusual_entries_survive_exactly() {
    // Long names need a GNU long-name entry, which debgen's raw headers
    // cannot write: build this data.tar with the tar crate.
    let long = format!("usr/share/long/{}", "n".repeat(150));
    let long_target = format!("{}-target", "t".repeat(120));
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, path, l).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    };
    use tar::EntryType as E;
    add("./usr/", E::Directory, 0o755, b"", None);
    add("./usr/share/", E::Directory, 0o755, b"", None);
    add("./usr/share/t/", E::Directory, 0o755, b"", None);
    add(
        "./usr/share/t/suid",
        E::Regular,
        0o4755,
        b"#!/bin/sh\n",
        None,
    );
    add("./usr/share/t/secret", E::Regular, 0o600, b"key", None);
    add(
        "./usr/share/t/data",
        E::Regular,
        0o644,
        b"shared bytes",
        None,
    );
    add(
        "./usr/share/t/data-link",
        E::Link,
        0o644,
        b"",
        Some("./usr/share/t/data"),
    );
    add("./usr/share/t/sym", E::Symlink, 0o777, b"", Some("data"));
    add(
        "./usr/share/t/longsym",
        E::Symlink,
        0o777,
        b"",
        Some(&long_target),
    );
    add("./usr/share/long/", E::Directory, 0o755, b"", None);
    add(&format!("./{long}"), E::Regular, 0o640, b"long", None);
    add("./var/", E::Directory, 0o755, b"", None);
    add("./var/tmp/", E::Directory, 0o1777, b"", None);
    let data = b.into_inner().unwrap();

    let d = Deb::new("oddities", "1.0").compression("");
    let c = Case::new(&[("oddities", "1.0")]);
    let p = d.write(&c.pool());
    rewrite_member(&p, "data.tar", data);
    c.index(&[(&d, p)]);
    let o = c.build();
    assert!(o.status.success(), "{}", text(&o));
    let files = base_layer(&c.dir().join("out"));
    let get = |p: &str| {
        files
            .iter()
            .find(|f| f.path == p)
            .unwrap_or_else(|| panic!("{p} missing from the layer"))
    };
    let f = get("usr/share/t/suid");
    assert_eq!((f.kind, f.mode), (E::Regular, 0o4755));
    let f = get("usr/share/t/secret");
    assert_eq!(
        (f.kind, f.mode, &f.data[..]),
        (E::Regular, 0o600, &b"key"[..])
    );
    let f = get("var/tmp");
    assert_eq!((f.kind, f.mode), (E::Directory, 0o1777));
    let f = get("usr/share/t/data");
    assert_eq!((f.kind, &f.data[..]), (E::Regular, &b"shared bytes"[..]));
    let f = get("usr/share/t/data-link");
    assert_eq!(f.kind, E::Link);
    assert_eq!(f.link.as_deref(), Some("usr/share/t/data"));
    let f = get("usr/share/t/sym");
    assert_eq!((f.kind, f.link.as_deref()), (E::Symlink, Some("data")));
    let f = get("usr/share/t/longsym");
    assert_eq!(
        (f.kind, f.link.as_deref()),
        (E::Symlink, Some(long_target.as_str()))
    );
    let f = get(&long);
    assert_eq!(
        (f.kind, f.mode, &f.data[..]),
        (E::Regular, 0o640, &b"long"[..])
    );
    // Clamped mtimes, root-owned, no umask anywhere.
    for f in &files {
        assert_eq!(f.mtime, 0, "{} not clamped", f.path);
        assert_eq!((f.uid, f.gid), (0, 0), "{}", f.path);
    }
    // Parents before children, hard-link target before the link.
    let pos = |p: &str| files.iter().position(|f| f.path == p).unwrap();
    assert!(pos("usr/share/t/data") < pos("usr/share/t/data-link"));
    assert!(pos("var") < pos("var/tmp"));
}

// ------------------------------------------------------------ issue 13
// Strict archive structure, control data nobody can forge, bounded records
// and entries, hostile index stanzas.

/// A case whose only package ships `control` instead of its honest stanza;
/// the mirror's index keeps the honest one.
fn forged_control(name: &str, control: &str) -> Case {
    let d = Deb::new(name, "1.0").raw_control(control);
    let c = Case::new(&[(name, "1.0")]);
    let p = d.write(&c.pool());
    c.index(&[(&d, p)]);
    c
}

#[test]
fn hostile_control_duplicate_field_forging_libc6_is_rejected() {
    let honest = Deb::new("evil-dup", "1.0").control();
    let c = forged_control(
        "evil-dup",
        &format!("{honest}Package: libc6\nVersion: 99:9\n"),
    );
    let t = rejected(&c, "evil-dup", "appears twice");
    assert!(t.contains("\"Package\""), "{t}");
}

#[test]
fn hostile_control_whitespace_only_line_is_rejected() {
    let honest = Deb::new("evil-ws", "1.0").control();
    let c = forged_control("evil-ws", &format!("{honest} \t\nPackage: libc6\n"));
    rejected(&c, "evil-ws", "whitespace only");
}

#[test]
fn hostile_control_second_stanza_is_rejected() {
    let honest = Deb::new("evil-two", "1.0").control();
    let c = forged_control(
        "evil-two",
        &format!("{honest}\nPackage: libc6\nVersion: 99:9\n"),
    );
    rejected(&c, "evil-two", "second stanza");
}

#[test]
fn hostile_control_character_in_control_is_rejected() {
    let honest = Deb::new("evil-esc", "1.0").control();
    let c = forged_control("evil-esc", &format!("{honest}X-Note: a\x1b[2Jb\n"));
    rejected(&c, "evil-esc", "control character");
}

#[test]
fn hostile_control_naming_another_package_is_rejected() {
    let c = forged_control("evil-other", &Deb::new("libc6", "1.0").control());
    let t = rejected(&c, "evil-other", "locked index entry");
    assert!(t.contains("Package \"libc6\""), "{t}");
}

#[test]
fn hostile_control_version_other_than_the_index_is_rejected() {
    let c = forged_control("evil-ver", &Deb::new("evil-ver", "99:1.0").control());
    let t = rejected(&c, "evil-ver", "locked index entry");
    assert!(t.contains("Version \"99:1.0\""), "{t}");
}

#[test]
fn control_status_field_is_ignored() {
    let honest = Deb::new("statusy", "1.0").control();
    let c = forged_control(
        "statusy",
        &format!("{honest}Status: deinstall ok config-files\n"),
    );
    let o = c.build();
    assert!(o.status.success(), "{}", text(&o));
    let layer = base_layer(&c.dir().join("out"));
    let f = layer
        .iter()
        .find(|f| f.path == "var/lib/dpkg/status.d/statusy")
        .expect("status.d entry");
    let status = String::from_utf8(f.data.clone()).unwrap();
    let lines: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("Status:"))
        .collect();
    assert_eq!(lines, ["Status: install ok installed"], "{status}");
    assert!(status.starts_with("Package: statusy\n"), "{status}");
}

/// The members of an honest package, for reassembly in hostile orders.
fn honest_members(name: &str) -> (Vec<u8>, Vec<u8>) {
    let d = Deb::new(name, "1.0");
    let tmp = tempfile::tempdir().unwrap();
    let p = d.write(tmp.path());
    let mut a = ar::Archive::new(std::fs::File::open(p).unwrap());
    let mut out = Vec::new();
    while let Some(m) = a.next_entry() {
        let mut m = m.unwrap();
        let mut data = Vec::new();
        m.read_to_end(&mut data).unwrap();
        out.push(data);
    }
    (out[1].clone(), out[2].clone())
}

/// A case whose package file is exactly `bytes`.
fn raw_case(name: &str, bytes: Vec<u8>) -> Case {
    let c = Case::new(&[(name, "1.0")]);
    let p = c.pool().join(format!("{name}_1.0_amd64.deb"));
    std::fs::write(&p, bytes).unwrap();
    c.index(&[(&Deb::new(name, "1.0"), p)]);
    c
}

#[test]
fn hostile_ar_members_out_of_order_are_rejected() {
    let (control, data) = honest_members("evil-order");
    let c = raw_case(
        "evil-order",
        raw_ar(&[
            (b"debian-binary", b"2.0\n".to_vec(), None),
            (b"data.tar.gz", data, None),
            (b"control.tar.gz", control, None),
        ]),
    );
    rejected(&c, "evil-order", "before the control member");
}

#[test]
fn hostile_ar_format_3_is_rejected() {
    let (control, data) = honest_members("evil-v3");
    let c = raw_case(
        "evil-v3",
        raw_ar(&[
            (b"debian-binary", b"3.0\n".to_vec(), None),
            (b"control.tar.gz", control, None),
            (b"data.tar.gz", data, None),
        ]),
    );
    rejected(&c, "evil-v3", "only format 2.x");
}

#[test]
fn hostile_ar_size_beyond_the_file_is_rejected() {
    let (control, data) = honest_members("evil-size");
    let n = data.len() as u64;
    let c = raw_case(
        "evil-size",
        raw_ar(&[
            (b"debian-binary", b"2.0\n".to_vec(), None),
            (b"control.tar.gz", control, None),
            (b"data.tar.gz", data, Some(n + 1_000_000)),
        ]),
    );
    rejected(&c, "evil-size", "remain in the file");
}

#[test]
fn hostile_ar_68_byte_name_table_panic_is_an_error() {
    // The fuzz finding: a member named `/5` and no GNU name table.
    let bytes = hex::decode(
        "213c617263683e0a2f352020202020202020202020202020302020202020202020202020302020202020302020202020363434202020202030202020202020202020600a",
    )
    .unwrap();
    let c = raw_case("evil-ar68", bytes);
    rejected(&c, "evil-ar68", "name table");
}

#[test]
fn hostile_ar_huge_name_tables_allocate_nothing() {
    // The fuzz findings: `//` and `#1/N` with sizes of 10 GB in tiny files.
    for (name, claimed, want) in [
        (&b"//"[..], 10_000_000_000u64, "name table"),
        (&b"#1/9999999999"[..], 0, "BSD long name"),
    ] {
        let bytes = raw_ar(&[(name, Vec::new(), Some(claimed))]);
        assert!(bytes.len() <= 68);
        let c = raw_case("evil-table", bytes);
        rejected(&c, "evil-table", want);
    }
}

#[test]
fn ar_members_after_data_are_ignored() {
    let (control, data) = honest_members("trailing");
    let c = raw_case(
        "trailing",
        raw_ar(&[
            (b"debian-binary", b"2.0\n".to_vec(), None),
            (b"_gpgorigin", b"sig".to_vec(), None),
            (b"control.tar.gz", control, None),
            (b"data.tar.gz", data, None),
            (b"//", b"junk".to_vec(), Some(9_999_999_999)),
        ]),
    );
    let o = c.build();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn hostile_newline_in_tar_name_is_rejected() {
    let (c, d, p) = one(
        "evil-newline",
        vec![T::RawFile(b"./usr/share/a\nPackage: libc6".to_vec(), b"x")],
    );
    c.index(&[(&d, p)]);
    rejected(&c, "evil-newline", "control character");
}

/// A data.tar of: one `kind` record claiming `claimed` bytes (with `body`
/// actually present), then a file.
fn record_tar(kind: tar::EntryType, claimed: u64, body: &[u8]) -> Vec<u8> {
    let mut t = tar_header(b"././@LongLink", claimed, kind);
    t.extend_from_slice(body);
    t.extend(std::iter::repeat_n(0u8, (512 - body.len() % 512) % 512));
    t.extend(tar_header(b"./usr/share/x", 0, tar::EntryType::Regular));
    t.extend([0u8; 1024]);
    t
}

#[test]
fn hostile_nul_in_long_name_is_rejected() {
    let (c, d, p) = one("evil-nul", vec![]);
    rewrite_member(
        &p,
        "data.tar",
        record_tar(tar::EntryType::GNULongName, 16, b"./usr/share/a\0b\0"),
    );
    c.index(&[(&d, p)]);
    rejected(&c, "evil-nul", "control character");
}

#[test]
fn hostile_huge_long_name_and_pax_records_are_refused_unread() {
    // The finding: a 3 GiB long name in a tiny .deb made the tar crate ask
    // for gigabytes. Now the header alone is refused.
    for (kind, what) in [
        (tar::EntryType::GNULongName, "GNU long-name record"),
        (tar::EntryType::GNULongLink, "GNU long-link record"),
        (tar::EntryType::XHeader, "PAX header record"),
    ] {
        let (c, d, p) = one("evil-long", vec![]);
        rewrite_member(
            &p,
            "data.tar.gz",
            gz(&record_tar(kind, 3 << 30, &[b'a'; 8192])),
        );
        assert!(std::fs::metadata(&p).unwrap().len() < 4096);
        c.index(&[(&d, p)]);
        let t = rejected(&c, "evil-long", what);
        assert!(t.contains("the limit is 4096"), "{t}");
    }
}

#[test]
fn hostile_entry_count_above_the_cap_is_refused() {
    let names: Vec<&'static str> = (0..50).map(|i| leak(format!("./usr/share/f{i}"))).collect();
    let (c, d, p) = one(
        "evil-many",
        names.iter().map(|n| T::File(n, b"", 0o644)).collect(),
    );
    c.index(&[(&d, p)]);
    let t = rejected_with(
        &c,
        "evil-many",
        "more than 20 entries",
        &["--max-package-entries", "20"],
    );
    assert!(t.contains("--max-package-entries"), "{t}");
    // The default cap lets it through.
    let o = c.build();
    assert!(o.status.success(), "{}", text(&o));
}

/// Run `program args` (stdout discarded) under GNU `time` and return its
/// exit code, stderr and peak RSS in KiB.
///
/// Not `wait4` on a direct child: Linux keeps the high-water RSS of the
/// address space a process replaces at `exec`, and a child forked from this
/// test process starts as a copy of it, so its `ru_maxrss` is at least the
/// test binary's own RSS at the fork (hundreds of MB while the rest of the
/// suite runs). `time` is a small process: the grandchild it forks starts
/// from `time`'s footprint, and `time` reports that grandchild alone.
fn run_measured(dir: &Path, program: &Path, args: &[&str]) -> (Option<i32>, String, u64) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let status = std::process::Command::new("time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg(program)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(err.reopen().unwrap())
        .status()
        .unwrap();
    // `time` writes "Command exited with non-zero status N" before the figure.
    let report = std::fs::read_to_string(rss_file.path()).unwrap();
    let rss = report
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS figure from time: {report:?}"));
    let code = status.code();
    (code, std::fs::read_to_string(err.path()).unwrap(), rss)
}

/// 1,000,000 empty files, streamed into a gzip member (the .deb is a few
/// MB), in a package of its own.
fn million_case() -> Case {
    let c = Case::new(&[("evil-million", "1.0")]);
    let d = Deb::new("evil-million", "1.0");
    let p = d.write(&c.pool());
    let mut gzw = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    use std::io::Write;
    for i in 0..1_000_000u32 {
        let name = format!("./usr/share/m/{i}");
        gzw.write_all(&tar_header(name.as_bytes(), 0, tar::EntryType::Regular))
            .unwrap();
    }
    gzw.write_all(&[0u8; 1024]).unwrap();
    rewrite_member(&p, "data.tar.gz", gzw.finish().unwrap());
    c.index(&[(&d, p)]);
    c
}

/// The binary the million-entry builds measure: this crate's, or the one
/// `IMGFORGE_MEASURE_BIN` names (to compare a release build, or an older one).
fn measured_bin() -> PathBuf {
    std::env::var_os("IMGFORGE_MEASURE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_imgforge")))
}

needs! { [has_time] "needs time (GNU time, to measure peak RSS)";
    fn hostile_million_entries_are_refused_with_bounded_memory() {
        // The default cap refuses the package before memory grows.
        let c = million_case();
        if !crate::common::require_tool("time") {
            return;
        }
        let (code, t, rss) = run_measured(
            c.dir(),
            &measured_bin(),
            &[
                "build", "recipes", "--mirror", "mirror", "--no-apt", "--out", "out", "--cache",
                "cache", "--jobs", "2",
            ],
        );
        assert_eq!(code, Some(1), "{t}");
        assert!(
            t.contains("evil-million") && t.contains("more than 200000 entries"),
            "{t}"
        );
        assert!(t.contains("--max-package-entries"), "{t}");
        c.assert_clean();
        eprintln!("peak RSS of the refused build: {rss} KiB");
        assert!(rss < 200 * 1024, "peak RSS was {rss} KiB");
    }
}

needs! { [has_time] "needs time (GNU time, to measure peak RSS)";
    fn hostile_million_entries_accepted_with_bounded_memory() {
        // With the cap raised, every stage reads the million entries: the layer
        // is sorted on disk, the license scan holds each path once.
        let c = million_case();
        if !crate::common::require_tool("time") {
            return;
        }
        let args = [
            "build",
            "recipes",
            "--mirror",
            "mirror",
            "--no-apt",
            "--out",
            "out",
            "--cache",
            "cache",
            "--jobs",
            "2",
            "--max-package-entries",
            "1000001",
        ];
        let (code, t, rss) = run_measured(c.dir(), &measured_bin(), &args);
        eprintln!("peak RSS of the accepted build: {rss} KiB");
        assert_eq!(code, Some(0), "{t}");
        assert!(c.dir().join("out/index.json").is_file(), "{t}");
        // Layers, dpkg metadata, license scan and SBOMs of the whole build.
        assert!(rss < 200 * 1024, "peak RSS was {rss} KiB");
    }
}

#[test]
fn raising_the_entry_cap_lets_a_large_package_through_every_stage() {
    // 200,100 empty files: over the default cap. With the cap raised as the
    // error's hint says, every stage must accept the package (the license
    // scan once refused it with the default cap).
    let c = Case::new(&[("many-files", "1.0")]);
    let d = Deb::new("many-files", "1.0");
    let p = d.write(&c.pool());
    let mut gzw = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    use std::io::Write;
    for i in 0..200_100u32 {
        let name = format!("./usr/share/m/{i}");
        gzw.write_all(&tar_header(name.as_bytes(), 0, tar::EntryType::Regular))
            .unwrap();
    }
    gzw.write_all(&[0u8; 1024]).unwrap();
    rewrite_member(&p, "data.tar.gz", gzw.finish().unwrap());
    c.index(&[(&d, p)]);
    let t = rejected(&c, "many-files", "more than 200000 entries");
    assert!(t.contains("--max-package-entries"), "{t}");
    let o = c.build_with(&["--max-package-entries", "250000"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A mirror with `good` and a hostile stanza claiming `evil`.
fn hostile_index_case(pins: &[(&str, &str)]) -> Case {
    let c = Case::new(pins);
    let good = Deb::new("good", "1.0");
    let p = good.write(&c.pool());
    c.index(&[(&good, p)]);
    let mut index = std::fs::read_to_string(c.dir().join("mirror/Packages")).unwrap();
    index.push_str(
        "Package: evil\nVersion: 1.0\nPackage: libc6\nArchitecture: amd64\nFilename: pool/evil.deb\nSize: 1\nSHA256: 00\n\n",
    );
    std::fs::write(c.dir().join("mirror/Packages"), index).unwrap();
    c
}

#[test]
fn hostile_index_stanza_fails_only_builds_that_select_it() {
    let c = hostile_index_case(&[("good", "1.0")]);
    let o = c.build();
    assert!(o.status.success(), "{}", text(&o));
    let o = run(imgforge()
        .current_dir(c.dir())
        .args(["check", "recipes", "--mirror", "mirror", "--no-apt"]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("warning:") && t.contains("(evil)"), "{t}");
    assert!(t.contains("appears twice"), "{t}");

    let c = hostile_index_case(&[("evil", "1.0")]);
    let t = rejected(&c, "evil", "stanza 2");
    assert!(t.contains("appears twice"), "{t}");
}

/// Files of `fuzz/<kind>/<target>/`, sorted.
fn fuzz_inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = crate::common::root().join("fuzz").join(kind).join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn fuzz_corpora_replay_through_the_parsers() {
    // What the fuzz targets call, without cargo-fuzz: committed seeds must
    // parse, committed crash regressions must be clean errors.
    let limits = imgforge::deb::Limits::default();
    let seeds = fuzz_inputs("corpus", "deb");
    assert!(seeds.len() >= 3, "deb seeds missing");
    for (name, bytes) in &seeds {
        let n = imgforge::deb::read_everything(bytes, &limits)
            .unwrap_or_else(|e| panic!("seed {name} was refused: {e}"));
        assert!(n > 0, "{name}");
    }
    let regressions = fuzz_inputs("regressions", "deb");
    assert!(regressions.len() >= 3, "deb regressions missing");
    for (name, bytes) in &regressions {
        let e = imgforge::deb::read_everything(bytes, &limits).unwrap_err();
        assert!(e.to_string().contains("input.deb"), "{name}: {e}");
    }
    for (name, bytes) in fuzz_inputs("corpus", "packages") {
        let mut index = imgforge::pkgindex::Index::new("amd64");
        let text = String::from_utf8(bytes).unwrap();
        let n = imgforge::pkgindex::add_packages_text(
            &mut index,
            &text,
            Path::new("Packages"),
            imgforge::pkgindex::Origin::Url(String::new()),
        )
        .unwrap();
        assert!(n > 0 && index.bad.is_empty(), "{name}: {:?}", index.bad);
    }
    for (name, bytes) in fuzz_inputs("corpus", "recipe") {
        let text = String::from_utf8(bytes).unwrap();
        let d =
            imgforge::recipe::check_text(Path::new("recipes/x.toml"), &text, name.contains("base"));
        assert!(
            d.iter().all(|d| !d.message.contains("invalid recipe")),
            "{name}: {d:?}"
        );
    }
    for (name, bytes) in fuzz_inputs("corpus", "dep5") {
        let text = String::from_utf8(bytes).unwrap();
        assert!(imgforge::sbom::dep5::is_dep5(&text), "{name}");
        assert!(
            !imgforge::sbom::dep5::parse(&text).licenses.is_empty()
                || !imgforge::sbom::dep5::parse(&text).files.is_empty(),
            "{name}"
        );
    }
    for (name, bytes) in fuzz_inputs("corpus", "lock") {
        let text = String::from_utf8(bytes).unwrap();
        let lock = imgforge::resolve::Lock::parse(&text, Path::new("imgforge.lock"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!lock.images.is_empty(), "{name}");
    }
    let release = fuzz_inputs("corpus", "release");
    assert!(release.len() >= 3, "release seeds missing");
    for (name, bytes) in release {
        use imgforge::archive::release::{parse_release, verify_detached, verify_inrelease};
        // No trusted key: the signed seeds parse as OpenPGP, then fail to verify.
        let e = verify_inrelease(&bytes, &[]).unwrap_err();
        let (text, sig) = bytes.split_at(bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len()));
        let d = verify_detached(text, sig, &[]).unwrap_err();
        if name.contains("inrelease") {
            assert!(e.contains("none of its 1 signature"), "{name}: {e}");
        }
        if name.contains("and-sig") {
            assert!(d.contains("none of the 1 signature"), "{name}: {d}");
        }
        let text = String::from_utf8_lossy(text);
        let r = parse_release(&text, "stable", "http://127.0.0.1/debian");
        assert!(
            r.files.contains_key("main/binary-amd64/Packages") || name.contains("inrelease"),
            "{name}: {:?}",
            r.files
        );
    }
}

#[test]
fn bundle_fuzz_seeds_read_and_verify() {
    // The bundle targets' seeds: manifests that read and write back the
    // same, and bundles (a full release, a delta) that `bundle verify`
    // accepts, so the fuzzers start from inputs that reach every check.
    let manifests = fuzz_inputs("corpus", "bundle_manifest");
    assert!(manifests.len() >= 2, "bundle_manifest seeds missing");
    for (name, bytes) in &manifests {
        let m = imgforge::bundle::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(imgforge::bundle::parse(&m.to_bytes()).unwrap(), m, "{name}");
    }
    let bundles = fuzz_inputs("corpus", "bundle");
    assert!(bundles.len() >= 2, "bundle seeds missing");
    for (name, bytes) in &bundles {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), bytes).unwrap();
        let opts = imgforge::bundle::VerifyOptions {
            file: tmp.path().to_path_buf(),
            key: None,
            base: None,
        };
        let v = imgforge::bundle::verify(&opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.manifest.images.len(), 1, "{name}");
        assert_eq!(v.manifest.base.is_some(), name.contains("delta"), "{name}");
    }
    // The remote cache's seeds: a step manifest and its config (split at
    // the first NUL), read for the step key the target asks for.
    let steps = fuzz_inputs("corpus", "cache_record");
    assert!(steps.len() >= 2, "cache_record seeds missing");
    for (name, bytes) in &steps {
        use imgforge::plan::remote;
        let nul = bytes
            .iter()
            .position(|b| *b == 0)
            .expect("manifest NUL config");
        let m = remote::parse_manifest(&bytes[..nul]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = name.trim_start_matches("seed-");
        let doc = remote::parse_doc(&bytes[nul + 1..], &m, kind, &"0".repeat(64))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(doc.files.len(), m.files.len(), "{name}");
    }
    let inventories = fuzz_inputs("corpus", "inventory");
    assert!(inventories.len() >= 2, "inventory seeds missing");
    for (name, bytes) in &inventories {
        let inv = imgforge::bundle::inventory::parse(bytes)
            .unwrap_or_else(|| panic!("{name}: not read as an inventory"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(name.contains(&inv.kind), "{name}: {}", inv.kind);
        let back = imgforge::bundle::inventory::parse(&inv.to_bytes());
        assert_eq!(back.unwrap().unwrap(), inv, "{name}");
    }
}
