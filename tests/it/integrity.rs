//! Integrity of what a build ships: a step-store blob whose bytes changed
//! without its size or time (a failing disk) is not shipped again but
//! evicted and remade, and `imgforge fsck` finds corrupt or missing blobs
//! of an output.

use crate::common::{copy_examples, imgforge, run, text};
use std::path::{Path, PathBuf};

fn build(dir: &Path, mirror: &Path, out: &str) -> String {
    let o = run(imgforge().current_dir(dir).args([
        "build",
        "recipes",
        "--no-apt",
        "--mirror",
        mirror.to_str().unwrap(),
        "--cache",
        "cache",
        "--out",
        out,
    ]));
    assert!(o.status.success(), "build failed:\n{}", text(&o));
    text(&o)
}

/// Every blob of the combined layout and the per-image layouts of `out`,
/// by name, with the sha256 of its bytes.
fn blobs(out: &Path) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut dirs = vec![out.join("blobs/sha256")];
    for e in std::fs::read_dir(out.join("images")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            dirs.push(p.join("blobs/sha256"));
        }
    }
    for d in dirs {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let (hex, _) = imgforge::digest::sha256_file(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            all.push((name, hex));
        }
    }
    all.sort();
    all
}

/// The digest of a layer the `image` of `out` ships (its `n`th).
fn layer_of(out: &Path, image: &str, n: usize) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("{image}:")))
        })
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("blobs/sha256").join(d)).unwrap()).unwrap();
    m["layers"][n]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}

/// Flip one bit in the middle of `p`, keeping its size, modification time
/// and mode (as a failing disk leaves a file).
fn flip_bit(p: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).unwrap();
    let mtime = meta.modified().unwrap();
    let mode = meta.permissions().mode();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mid = meta.len() / 2;
    let mut b = [0u8];
    f.seek(SeekFrom::Start(mid)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(mid)).unwrap();
    f.write_all(&[b[0] ^ 1]).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(f);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    let now = std::fs::metadata(p).unwrap();
    assert_eq!((now.len(), now.modified().unwrap()), (meta.len(), mtime));
}

fn fsck(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let o = run(imgforge().current_dir(dir).arg("fsck").args(args));
    (o.status.code(), text(&o))
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs ../shared/debian, ../shared/debian-essential, runc";
    /// A shipped layer blob flipped in the step store (size and time kept)
    /// is evicted with a warning naming it and remade: the next output's
    /// blobs all hash to their names, the same digests as the first build.
    fn integrity_corrupt_store_blob_is_evicted_and_remade() {
        let mirror = crate::common::examples_mirror().expect("examples mirror");
        let tmp = copy_examples();
        let dir = tmp.path();
        build(dir, &mirror, "out1");
        let first = blobs(&dir.join("out1"));
        let layer = layer_of(&dir.join("out1"), "nginx", 2);
        let stored: PathBuf = dir.join("cache/plan/blobs/sha256").join(&layer);
        flip_bit(&stored);
        let t = build(dir, &mirror, "out2");
        assert!(
            t.lines().any(|l| l.contains("Warning") && l.contains(&layer) && l.contains("corrupt")),
            "no warning naming {layer}:\n{t}"
        );
        let second = blobs(&dir.join("out2"));
        for (name, hex) in &second {
            assert_eq!(name, hex, "out2 ships a blob that does not hash to its name");
        }
        let names = |v: &[(String, String)]| v.iter().map(|b| b.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&first), names(&second));
        assert_eq!(
            imgforge::digest::sha256_file(&stored).unwrap().0,
            layer,
            "the store holds the remade blob"
        );
        let (code, t) = fsck(&["--out", "out2", "--cache", "cache"], dir);
        assert_eq!(code, Some(0), "{t}");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs ../shared/debian, ../shared/debian-essential, runc";
    /// fsck: a good output is clean (exit 0, one line); a corrupt blob and
    /// a missing one are each named, exit 3.
    fn integrity_fsck_names_corrupt_and_missing_blobs() {
        let mirror = crate::common::examples_mirror().expect("examples mirror");
        let tmp = copy_examples();
        let dir = tmp.path();
        build(dir, &mirror, "out");
        let (code, t) = fsck(&["-q", "--out", "out", "--cache", "cache"], dir);
        assert_eq!(code, Some(0), "{t}");
        assert_eq!(t.trim().lines().count(), 1, "{t}");
        assert!(t.contains("clean"), "{t}");
        // A blob of the output, copied first (the output links the store's).
        let out = dir.join("out");
        let bad = layer_of(&out, "python", 3);
        let p = out.join("blobs/sha256").join(&bad);
        let copy = dir.join("copy");
        std::fs::copy(&p, &copy).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::rename(&copy, &p).unwrap();
        flip_bit(&p);
        let (code, t) = fsck(&["--out", "out"], dir);
        assert_eq!(code, Some(3), "{t}");
        let first = t.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
        assert!(first.contains(&bad) && first.contains("corrupt"), "{t}");
        assert!(t.contains("problem(s) found"), "{t}");
        // The store was not touched: it is clean.
        let (code, t) = fsck(&["--cache", "cache"], dir);
        assert_eq!(code, Some(0), "{t}");
        // The same blob missing.
        std::fs::remove_file(&p).unwrap();
        let (code, t) = fsck(&["--out", "out"], dir);
        assert_eq!(code, Some(3), "{t}");
        let first = t.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
        assert!(first.contains(&bad) && first.contains("missing"), "{t}");
    }
}
