//! `imgforge sources` on the built examples. The fixture has no source
//! packages, so the test makes one for every source package the examples
//! ship (a `3.0 (quilt)` `.dsc` with `.orig.tar.xz` and `.debian.tar.xz`,
//! or a `3.0 (native)` one with one `.tar.xz`), serves them on 127.0.0.1
//! with a signed `Sources` index as the archive tests serve `Packages`, and
//! checks: every GPL/LGPL package's source present and verified, the index,
//! byte-identical output on a second run (directory and tar), `--all`, a
//! corrupt tarball refused naming the file with nothing written, and a
//! source the archive lacks named with its binary package.

use crate::archive::{Server, key, sha, sign_release, write_keyring};
use crate::common::{imgforge, run, text};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One shipped package, as the build's license annex lists it.
#[derive(Debug, Clone)]
struct Row {
    package: String,
    source: String,
    source_version: String,
    license: String,
    images: Vec<String>,
}

fn annex(out: &Path) -> Vec<Row> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(out.join("legal/all.licenses.json")).unwrap())
            .unwrap();
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            Row {
                package: s("package"),
                source: s("source"),
                source_version: s("source_version"),
                license: s("license"),
                images: p["images"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_string())
                    .collect(),
            }
        })
        .collect()
}

/// A `.tar.xz` holding `files` under `top/`.
fn tar_xz(top: &str, files: &[(&str, String)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, format!("{top}/{name}"), body.as_bytes())
            .unwrap();
    }
    let raw = b.into_inner().unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut xz, &raw).unwrap();
    xz.finish().unwrap()
}

/// The files of a made-up source package: name -> bytes, the `.dsc` first.
fn source_files(src: &str, version: &str) -> Vec<(String, Vec<u8>)> {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    let (upstream, quilt) = match v.rsplit_once('-') {
        Some((u, _)) => (u, true),
        None => (v, false),
    };
    let top = format!("{src}-{upstream}");
    let copyright = format!("the source of {src} {version}\n");
    let mut tarballs = Vec::new();
    if quilt {
        let orig = tar_xz(&top, &[("README", format!("{src} upstream {upstream}\n"))]);
        let deb = tar_xz("debian", &[("copyright", copyright)]);
        tarballs.push((format!("{src}_{upstream}.orig.tar.xz"), orig));
        tarballs.push((format!("{src}_{v}.debian.tar.xz"), deb));
    } else {
        let t = tar_xz(&top, &[("debian/copyright", copyright)]);
        tarballs.push((format!("{src}_{v}.tar.xz"), t));
    }
    let sums: String = tarballs
        .iter()
        .map(|(n, b)| format!(" {} {} {n}\n", sha(b), b.len()))
        .collect();
    let format = if quilt { "3.0 (quilt)" } else { "3.0 (native)" };
    let dsc =
        format!("Format: {format}\nSource: {src}\nVersion: {version}\nChecksums-Sha256:\n{sums}");
    let mut out = vec![(format!("{src}_{v}.dsc"), dsc.into_bytes())];
    out.extend(tarballs);
    out
}

/// A signed archive at `root` whose `Sources` lists `sources` (name,
/// version); returns every file made: (directory, name) -> bytes.
fn source_archive(
    root: &Path,
    sources: &BTreeSet<(String, String)>,
    key: &pgp::composed::SignedSecretKey,
    binary: Option<&Path>,
) -> BTreeMap<(String, String), Vec<u8>> {
    let mut made = BTreeMap::new();
    let mut index = String::new();
    for (src, version) in sources {
        let dir = format!("pool/main/{}/{src}", &src[..1]);
        std::fs::create_dir_all(root.join(&dir)).unwrap();
        let files = source_files(src, version);
        let mut sums = String::new();
        for (name, bytes) in &files {
            std::fs::write(root.join(&dir).join(name), bytes).unwrap();
            sums.push_str(&format!(" {} {} {name}\n", sha(bytes), bytes.len()));
            made.insert((dir.clone(), name.clone()), bytes.clone());
        }
        index.push_str(&format!(
            "Package: {src}\nBinary: {src}\nVersion: {version}\nDirectory: {dir}\nChecksums-Sha256:\n{sums}\n"
        ));
    }
    let sdir = root.join("dists/stable/main/source");
    std::fs::create_dir_all(&sdir).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut xz, index.as_bytes()).unwrap();
    let xz = xz.finish().unwrap();
    std::fs::write(sdir.join("Sources"), &index).unwrap();
    std::fs::write(sdir.join("Sources.xz"), &xz).unwrap();
    let mut release = format!(
        "Origin: test\nSuite: stable\nCodename: stable\nArchitectures: amd64 source\nComponents: main\nSHA256:\n {} {} main/source/Sources\n {} {} main/source/Sources.xz\n",
        sha(index.as_bytes()),
        index.len(),
        sha(&xz),
        xz.len()
    );
    if let Some(mirror) = binary {
        // The examples' .debs too, as an archive serves them.
        for e in std::fs::read_dir(mirror.join("pool")).unwrap() {
            let p = e.unwrap().path();
            let to = root.join("pool").join(p.file_name().unwrap());
            std::os::unix::fs::symlink(p.canonicalize().unwrap(), to).unwrap();
        }
        let packages = std::fs::read(mirror.join("Packages")).unwrap();
        let bdir = root.join("dists/stable/main/binary-amd64");
        std::fs::create_dir_all(&bdir).unwrap();
        std::fs::write(bdir.join("Packages"), &packages).unwrap();
        release.push_str(&format!(
            " {} {} main/binary-amd64/Packages\n",
            sha(&packages),
            packages.len()
        ));
    }
    sign_release(root, &release, key);
    made
}

/// The examples' recipes and base, copied, reading the archive at `uri`.
fn tree_for(built: &Path, uri: &str, key: &pgp::composed::SignedSecretKey) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for d in ["recipes", "base"] {
        crate::common::copy_dir(&built.join(d), &t.path().join(d));
    }
    let base = t.path().join("base/base.toml");
    let mut text = std::fs::read_to_string(&base).unwrap();
    text.push_str(&format!(
        "\n[[source.archive]]\nuri = \"{uri}\"\nsuites = [\"stable\"]\ncomponents = [\"main\"]\nkeyring = \"key.asc\"\n"
    ));
    std::fs::write(&base, text).unwrap();
    write_keyring(key, &t.path().join("base/key.asc"));
    t
}

/// Run `imgforge sources OUT -o DEST [extra]` in `tree` with its own cache.
fn sources(tree: &Path, out: &Path, dest: &Path, extra: &[&str]) -> std::process::Output {
    run(imgforge()
        .arg("sources")
        .arg(out)
        .arg("-o")
        .arg(dest)
        .args(["recipes", "--no-apt", "-q", "--cache"])
        .arg(tree.join("cache"))
        .args(extra)
        .current_dir(tree))
}

/// Every file under `dir`, relative path -> bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap();
            (rel.display().to_string(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// (image, package) pairs of a `sources.json`.
fn indexed(v: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (img, i) in v["images"].as_object().unwrap() {
        for p in i["packages"].as_array().unwrap() {
            out.insert((img.clone(), p["package"].as_str().unwrap().to_string()));
        }
    }
    out
}

struct Setup {
    _srv: tempfile::TempDir,
    root: PathBuf,
    tree: tempfile::TempDir,
    out: PathBuf,
    rows: Vec<Row>,
    made: BTreeMap<(String, String), Vec<u8>>,
}

fn setup() -> Option<Setup> {
    let built = crate::build::shared()?;
    let rows = annex(&built.out);
    let all: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.source.clone(), r.source_version.clone()))
        .collect();
    let srv = tempfile::tempdir().unwrap();
    let root = srv.path().join("srv");
    let key = key();
    let made = source_archive(&root, &all, &key, None);
    let server = Server::start(&root);
    let tree = tree_for(&built.tree, server.url("").trim_end_matches('/'), &key);
    Some(Setup {
        _srv: srv,
        root,
        tree,
        out: built.out.clone(),
        rows,
        made,
    })
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn sources_of_the_examples_are_complete_verified_and_reproducible() {
        let Some(s) = setup() else { return };
        let t = s.tree.path();
        let o = sources(t, &s.out, &t.join("src1"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        let got = files_under(&t.join("src1"));
        let index: Value = serde_json::from_slice(&got["sources.json"]).unwrap();
        // Every GPL/LGPL package of every image is there; a permissive one is not.
        let gpl: BTreeSet<(String, String)> = s
            .rows
            .iter()
            .filter(|r| r.license.contains("GPL"))
            .flat_map(|r| r.images.iter().map(|i| (i.clone(), r.package.clone())))
            .collect();
        assert!(gpl.iter().any(|(_, p)| p == "libc6"), "{gpl:?}");
        let listed = indexed(&index);
        let missing: Vec<_> = gpl.difference(&listed).collect();
        assert!(missing.is_empty(), "not covered: {missing:?}");
        let zlib = s.rows.iter().find(|r| r.package == "zlib1g").unwrap();
        assert!(!zlib.license.contains("GPL"), "{}", zlib.license);
        assert!(!listed.iter().any(|(_, p)| p == "zlib1g"));
        // Each binary maps to its own source; each file is the one served.
        for (img, i) in index["images"].as_object().unwrap() {
            assert!(i["manifest"].as_str().unwrap().starts_with("sha256:"), "{img}: {i}");
            for p in i["packages"].as_array().unwrap() {
                let r = s.rows.iter().find(|r| r.package == p["package"]).unwrap();
                assert_eq!(p["source"]["package"], r.source.as_str(), "{img}");
                assert_eq!(p["source"]["version"], r.source_version.as_str());
            }
        }
        let mut n = 0;
        for src in index["sources"].as_array().unwrap() {
            let dir = src["directory"].as_str().unwrap();
            let name = src["package"].as_str().unwrap();
            assert!(src["files"].as_array().unwrap().len() >= 2, "{src}");
            for f in src["files"].as_array().unwrap() {
                let fname = f["name"].as_str().unwrap();
                let bytes = &got[&format!("{dir}/{fname}")];
                assert_eq!(f["sha256"].as_str().unwrap(), sha(bytes));
                let served = &s.made[&(format!("pool/main/{}/{name}", &name[..1]), fname.to_string())];
                assert_eq!(bytes, served, "{fname}");
                n += 1;
            }
        }
        assert!(n >= 2 * gpl.len().min(2), "{n} files");
        let offer = String::from_utf8(got["OFFER.txt"].clone()).unwrap();
        assert!(offer.contains("WRITTEN OFFER") && offer.contains("glibc_"), "{offer}");
        // A second run (warm store) writes the same bytes; the tar form too.
        let o = sources(t, &s.out, &t.join("src2"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(files_under(&t.join("src2")), got, "second run differs");
        for f in ["a.tar", "b.tar"] {
            let o = sources(t, &s.out, &t.join(f), &[]);
            assert!(o.status.success(), "{}", text(&o));
        }
        let tar_a = std::fs::read(t.join("a.tar")).unwrap();
        assert_eq!(tar_a, std::fs::read(t.join("b.tar")).unwrap());
        let sde = index["source_date_epoch"].as_u64().unwrap();
        let mut ar = tar::Archive::new(tar_a.as_slice());
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), sde);
            assert_eq!(e.header().uid().unwrap(), 0);
            names.push(e.path().unwrap().display().to_string());
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.contains(&"sources.json".to_string()));
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn sources_all_covers_every_shipped_package() {
        let Some(s) = setup() else { return };
        let t = s.tree.path();
        let o = sources(t, &s.out, &t.join("all"), &["--all"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: Value =
            serde_json::from_slice(&std::fs::read(t.join("all/sources.json")).unwrap()).unwrap();
        let every: BTreeSet<(String, String)> = s
            .rows
            .iter()
            .flat_map(|r| r.images.iter().map(|i| (i.clone(), r.package.clone())))
            .collect();
        assert_eq!(indexed(&v), every);
        assert_eq!(v["selection"], "all");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn sources_refuses_a_corrupt_tarball_and_names_a_missing_source() {
        let Some(s) = setup() else { return };
        let t = s.tree.path();
        // glibc's upstream tarball changes after the index was signed.
        let (dir, name) = s
            .made
            .keys()
            .find(|(d, n)| d.ends_with("/glibc") && n.ends_with(".orig.tar.xz"))
            .cloned()
            .unwrap();
        let bad = s.root.join(&dir).join(&name);
        let mut bytes = std::fs::read(&bad).unwrap();
        bytes.extend_from_slice(b"tampered");
        std::fs::write(&bad, &bytes).unwrap();
        let dest = t.join("corrupt");
        let o = sources(t, &s.out, &dest, &[]);
        let msg = text(&o);
        assert!(!o.status.success(), "{msg}");
        assert!(msg.contains(&name), "does not name {name}: {msg}");
        assert!(msg.contains("sha256 check failed"), "{msg}");
        assert!(!dest.exists(), "output written");
        let stored = t.join("cache/store/source/sha256").join(sha(&bytes));
        assert!(!stored.exists(), "the corrupt file was stored");
        let leftovers: Vec<_> = std::fs::read_dir(t)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".imgforge-sources"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A source package the archive lacks: named, with its binary package.
        let key = key();
        let srv = tempfile::tempdir().unwrap();
        let keep: BTreeSet<(String, String)> = s
            .rows
            .iter()
            .filter(|r| r.source != "glibc")
            .map(|r| (r.source.clone(), r.source_version.clone()))
            .collect();
        source_archive(srv.path(), &keep, &key, None);
        let server = Server::start(srv.path());
        let built = crate::build::shared().unwrap();
        let t2 = tree_for(&built.tree, server.url("").trim_end_matches('/'), &key);
        let o = sources(t2.path(), &s.out, &t2.path().join("x"), &[]);
        let msg = text(&o);
        assert!(!o.status.success(), "{msg}");
        assert!(msg.contains("no source package glibc"), "{msg}");
        assert!(msg.contains("libc6"), "{msg}");
        assert!(msg.contains("snapshot"), "{msg}");
        assert!(!t2.path().join("x").exists());
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    /// `vendor --sources` puts the source packages into the flat mirror;
    /// `sources --mirror` then writes the same output with no archive.
    fn sources_from_a_vendored_mirror_need_no_archive() {
        let Some(built) = crate::build::shared() else { return };
        let all: BTreeSet<(String, String)> = annex(&built.out)
            .iter()
            .map(|r| (r.source.clone(), r.source_version.clone()))
            .collect();
        let srv = tempfile::tempdir().unwrap();
        let key = key();
        source_archive(srv.path(), &all, &key, Some(&built.fixture));
        let server = Server::start(srv.path());
        let uri = server.url("");
        let tree = tree_for(&built.tree, uri.trim_end_matches('/'), &key);
        let t = tree.path();
        let mirror = t.join("mirror");
        let o = run(imgforge()
            .arg("vendor")
            .arg(&mirror)
            .args(["recipes", "--sources", "--no-apt", "-q", "--cache"])
            .arg(t.join("cache"))
            .current_dir(t));
        assert!(o.status.success(), "{}", text(&o));
        let index = std::fs::read_to_string(mirror.join("Sources")).unwrap();
        assert!(index.contains("Package: glibc\n"), "{index}");
        let sums = std::fs::read_to_string(mirror.join("SHA256SUMS")).unwrap();
        assert!(sums.contains("  source/glibc_"), "{sums}");
        let o = sources(t, &built.out, &t.join("online"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        // Offline: another tree and an empty cache, only the mirror.
        let offline = tree_for(&built.tree, uri.trim_end_matches('/'), &key);
        let before = server.count();
        let m = mirror.display().to_string();
        let o = sources(offline.path(), &built.out, &t.join("offline"), &["--mirror", &m]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(server.count(), before, "the offline run used the archive");
        assert_eq!(files_under(&t.join("offline")), files_under(&t.join("online")));
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn bundle_carries_the_sources_and_verifies_them() {
        let Some(s) = setup() else { return };
        let t = s.tree.path();
        let o = sources(t, &s.out, &t.join("src"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        let bundle = |dest: &str, extra: &[&std::ffi::OsStr]| {
            run(imgforge()
                .args(["-q", "bundle"])
                .arg(&s.out)
                .arg("-o")
                .arg(t.join(dest))
                .args(extra))
        };
        let src = t.join("src");
        let o = bundle("b1.tar", &["--sources".as_ref(), src.as_os_str()]);
        assert!(o.status.success(), "{}", text(&o));
        let o = bundle("b2.tar", &["--sources".as_ref(), src.as_os_str()]);
        assert!(o.status.success(), "{}", text(&o));
        let b1 = std::fs::read(t.join("b1.tar")).unwrap();
        assert_eq!(b1, std::fs::read(t.join("b2.tar")).unwrap(), "not deterministic");
        // Every file of the sources directory is in the bundle and its
        // manifest, under sources/, with its sha256.
        let mut ar = tar::Archive::new(b1.as_slice());
        let mut inside = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            inside.insert(name, bytes);
        }
        let manifest: Value = serde_json::from_slice(&inside["imgforge-bundle.json"]).unwrap();
        let listed: BTreeMap<&str, &str> = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["path"].as_str().unwrap(), f["sha256"].as_str().unwrap()))
            .collect();
        let want = files_under(&src);
        assert!(want.contains_key("sources.json") && want.len() > 3, "{:?}", want.keys());
        for (rel, bytes) in &want {
            let name = format!("sources/{rel}");
            assert_eq!(inside.get(&name), Some(bytes), "{name}");
            assert_eq!(listed.get(name.as_str()), Some(&sha(bytes).as_str()), "{name}");
        }
        let o = run(imgforge().args(["-q", "bundle", "verify"]).arg(t.join("b1.tar")));
        assert!(o.status.success(), "{}", text(&o));
        // A source tarball changed after bundling is refused, naming it.
        let (victim, _) = want.iter().find(|(k, _)| k.ends_with(".tar.xz")).unwrap();
        let name = format!("sources/{victim}");
        let pos = b1
            .windows(inside[&name].len().min(64))
            .position(|w| w == &inside[&name][..inside[&name].len().min(64)])
            .unwrap();
        let mut bad = b1.clone();
        bad[pos + 10] ^= 0xff;
        std::fs::write(t.join("bad.tar"), &bad).unwrap();
        let o = run(imgforge().args(["-q", "bundle", "verify"]).arg(t.join("bad.tar")));
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(text(&o).contains(&name), "{}", text(&o));
        // A .tar written by `sources -o FILE.tar` is not a directory.
        let o = sources(t, &s.out, &t.join("src.tar"), &[]);
        assert!(o.status.success(), "{}", text(&o));
        let tar = t.join("src.tar");
        let o = bundle("b3.tar", &["--sources".as_ref(), tar.as_os_str()]);
        assert!(!o.status.success());
        assert!(text(&o).contains("imgforge sources"), "{}", text(&o));
        assert!(!t.join("b3.tar").exists());
    }
}
