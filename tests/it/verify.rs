//! `imgforge verify`: rebuild-twice checks and `--against` record checks.
//!
//! Full builds are slow, so most tests use tiny trees (a base of `netbase`
//! only, one small image) written into a temp dir; only
//! `examples_rebuild_bit_for_bit` builds the example recipes (twice,
//! concurrently). Tests skip without the package fixture; the ones with a
//! build stage also skip without `runc`.

use crate::common;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

const BASE: &str = r#"[image]
name = "base"
tag = "tiny"
from = "scratch"
source-date-epoch = 1735689600

[source]
apt = false
arch = "amd64"
distro = "debian-12"

[packages]
netbase = "6.4"

# ../shared/debian alone lacks Debian's Essential set: no toolset, so
# nothing is configured (netbase has nothing to configure).
[configure]
essential = false
"#;

const APP: &str = r#"[image]
name = "app"
tag = "1.0"

[packages]
libtirpc-common = "1.3.3+ds-1"

[config]
# Nothing here runs: a command would fail the runtime lint (no program ships).
workdir = "/"
"#;

/// A build stage that writes the time and a random uuid into its artifact.
const STAMP: &str = r#"[image]
name = "stamp"
tag = "1.0"

[build]
packages = { busybox-static = "1:1.35.0-4+deb12u1+b1" }
steps = [["/usr/bin/busybox", "sh", "-c", "busybox date +%s%N > /out/stamp; busybox cat /proc/sys/kernel/random/uuid >> /out/stamp 2>/dev/null; exit 0"]]
artifacts = ["/out/stamp"]

[[copy]]
from = "/out/stamp"
to = "/usr/share/stamp/stamp"
mode = "0644"
"#;

/// A temp tree with `base/base.toml` and the given recipes.
fn tiny_tree(recipes: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("base")).unwrap();
    std::fs::create_dir_all(t.path().join("recipes")).unwrap();
    std::fs::write(t.path().join("base/base.toml"), BASE).unwrap();
    for (name, text) in recipes {
        std::fs::write(t.path().join("recipes").join(name), text).unwrap();
    }
    t
}

fn with_mirror(cmd: &mut std::process::Command, tree: &Path, fixture: &Path) {
    cmd.arg(tree.join("recipes"))
        .arg("--mirror")
        .arg(fixture)
        .arg("--no-apt")
        .arg("--cache")
        .arg(tree.join("cache"));
}

fn build(tree: &Path, fixture: &Path, out: &Path) {
    let mut c = common::imgforge();
    // One package layer per image: the tests below name layers by index.
    c.args(["-q", "build", "--layers", "single"]);
    with_mirror(&mut c, tree, fixture);
    let o = common::run(c.arg("--out").arg(out));
    assert!(o.status.success(), "build failed:\n{}", common::text(&o));
}

fn verify(tree: &Path, fixture: &Path, extra: &[&str]) -> Output {
    let mut c = common::imgforge();
    c.args(["-q", "verify", "--layers", "single"]);
    with_mirror(&mut c, tree, fixture);
    common::run(c.args(extra))
}

fn verify_against(tree: &Path, fixture: &Path, record: &Path, extra: &[&str]) -> Output {
    let r = record.to_str().unwrap();
    let mut args = vec!["--against", r];
    args.extend_from_slice(extra);
    verify(tree, fixture, &args)
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", common::text(o)))
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH";
    fn examples_rebuild_bit_for_bit() {
        let Some(fixture) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        let tree = common::copy_examples();
        let o = verify(tree.path(), &fixture, &[]);
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(0), "{t}");
        assert!(t.contains("identical: compared 4 image(s)"), "{t}");
        assert!(t.contains("entries inside layers"), "{t}");
        assert!(t.contains("umask 077") && t.contains("jobs 1"), "{t}");
    }
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn a_stage_that_records_the_time_is_caught() {
        let Some(fixture) = common::fixture() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        let tree = tiny_tree(&[("stamp.toml", STAMP)]);
        let o = verify(tree.path(), &fixture, &[]);
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(3), "{t}");
        assert!(t.contains("image stamp:1.0, layer 1"), "{t}");
        assert!(t.contains("usr/share/stamp/stamp"), "{t}");
        assert!(t.contains("content differs"), "{t}");
        // The lock was written once, before both builds.
        assert!(tree.path().join("recipes/imgforge.lock").is_file());
    }
}

/// Flip the 0o001 bit of `path`'s mode in a raw tar (header edited in
/// place, checksum recomputed); returns (old mode, new mode).
fn flip_mode_bit(tar: &mut [u8], path: &str) -> (u32, u32) {
    let mut off = 0;
    while off + 512 <= tar.len() && tar[off..off + 512].iter().any(|&b| b != 0) {
        let h = &mut tar[off..off + 512];
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = std::str::from_utf8(&h[..name_end]).unwrap().to_string();
        let octal = |b: &[u8]| {
            let s = std::str::from_utf8(b).unwrap();
            u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap_or(0)
        };
        let size = octal(&h[124..136]);
        if name == path {
            let old = octal(&h[100..108]) as u32;
            let new = old ^ 0o001;
            h[100..108].copy_from_slice(format!("{new:07o}\0").as_bytes());
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| b as u32).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            return (old, new);
        }
        off += 512 + size.div_ceil(512) as usize * 512;
    }
    panic!("{path} not found in the layer");
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// Copy `out` to `saved`, flip one mode bit in `image`'s layer `index`,
/// store the tampered blob under its new digest and update the record.
fn tamper(out: &Path, saved: &Path, image: &str, index: usize, path: &str) -> (u32, u32) {
    common::copy_dir(out, saved);
    let rec_path = saved.join("imgforge-record.json");
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
    let layer = &mut rec["images"][image]["layers"][index];
    let old = layer["digest"].as_str().unwrap().to_string();
    let blob = saved
        .join("blobs/sha256")
        .join(old.trim_start_matches("sha256:"));
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&blob).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    let modes = flip_mode_bit(&mut tar, path);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let digest = sha256(&gz);
    std::fs::write(
        saved
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
        &gz,
    )
    .unwrap();
    layer["digest"] = Value::from(digest);
    layer["diff_id"] = Value::from(sha256(&tar));
    layer["size"] = Value::from(gz.len() as u64);
    std::fs::write(&rec_path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    modes
}

needs! { [has_fixture_debian] "needs ../shared/debian";
    /// One build, then three `--against` checks: the same tree passes; a
    /// tampered recorded layer is diffed down to the path and both modes; a
    /// changed pin names the image and layer and suggests the lock changed.
    fn against_a_record() {
        let Some(fixture) = common::fixture() else {
            return;
        };
        let tree = tiny_tree(&[("app.toml", APP)]);
        let t = tree.path();
        let out = t.join("out");
        build(t, &fixture, &out);
        let record = out.join("imgforge-record.json");

        // 1. Same tree: identical.
        let o = verify_against(t, &fixture, &record, &["--format", "json"]);
        assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
        let j = json_of(&o);
        assert_eq!(j["identical"], true);
        assert_eq!(j["compared"]["images"], 2);
        assert!(j["compared"]["layer_entries"].as_u64().unwrap() > 10, "{j}");

        // 2. One mode bit flipped in a recorded layer.
        let saved = t.join("saved");
        let (a, b) = tamper(&out, &saved, "app:1.0", 1, "etc/netconfig");
        assert_eq!((a, b), (0o644, 0o645));
        let o = verify_against(t, &fixture, &saved.join("imgforge-record.json"), &[]);
        let text = common::text(&o);
        assert_eq!(o.status.code(), Some(3), "{text}");
        assert!(text.contains("image app:1.0, layer 1"), "{text}");
        assert!(text.contains("etc/netconfig"), "{text}");
        assert!(text.contains("mode differs: a 0645, b 0644"), "{text}");
        let o = verify_against(
            t,
            &fixture,
            &saved.join("imgforge-record.json"),
            &["--format", "json"],
        );
        let d = &json_of(&o)["difference"];
        assert_eq!(d["object"], "layer");
        assert_eq!(d["field"], "mode");
        assert_eq!(d["layer_index"], 1);
        assert_eq!(d["path"], "etc/netconfig");
        assert_eq!(
            (d["a"].as_str(), d["b"].as_str()),
            (Some("0645"), Some("0644"))
        );

        // 3. A new pin, re-locked; the record alone (no blobs beside it).
        let lone = t.join("lone");
        std::fs::create_dir_all(&lone).unwrap();
        std::fs::copy(&record, lone.join("imgforge-record.json")).unwrap();
        std::fs::write(
            t.join("recipes/app.toml"),
            APP.replace(
                "[packages]\n",
                "[packages]\ngcc-12-base = \"12.2.0-14+deb12u1\"\n",
            ),
        )
        .unwrap();
        let mut c = common::imgforge();
        c.args(["-q", "lock"]);
        with_mirror(&mut c, t, &fixture);
        let o = common::run(&mut c);
        assert!(o.status.success(), "{}", common::text(&o));
        let o = verify_against(
            t,
            &fixture,
            &lone.join("imgforge-record.json"),
            &["--locked"],
        );
        let text = common::text(&o);
        assert_eq!(o.status.code(), Some(3), "{text}");
        assert!(text.contains("image app:1.0, layer 1"), "{text}");
        assert!(text.contains("imgforge.lock or a recipe changed"), "{text}");
        assert!(text.contains("gcc-12-base"), "{text}");
    }
}

needs! { [has_fixture_debian] "needs ../shared/debian";
    fn a_bad_record_is_an_error_not_a_difference() {
        let Some(fixture) = common::fixture() else {
            return;
        };
        let tree = tiny_tree(&[("app.toml", APP)]);
        let bogus: PathBuf = tree.path().join("bogus.json");
        std::fs::write(&bogus, "{}").unwrap();
        let o = verify_against(tree.path(), &fixture, &bogus, &[]);
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("not an imgforge record"), "{t}");
    }
}
