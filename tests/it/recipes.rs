//! Recipes, pinning policy, lock file and checksums, through the CLI.

use crate::common::*;
use std::path::Path;

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

const BASE: &str = r#"[image]
name = "base"
tag = "1"
from = "scratch"
source-date-epoch = 0

[packages]
libc6 = "2.36-9+deb12u14"
"#;

/// Replace the temp dir in output with `<tmp>` so snapshots are stable.
fn scrub(s: &str, tmp: &Path) -> String {
    s.replace(&tmp.display().to_string(), "<tmp>")
}

#[test]
fn unpinned_inputs_are_all_reported_with_file_and_line_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("base/base.toml"), BASE);
    write(
        &tmp.path().join("recipes/web.toml"),
        r#"[image]
name = "web"
tag = "1.0"
from = "debian:bookworm"

[packages]
nginx-light = ""
curl = "*"
bash = ">= 5.0"
"#,
    );
    write(
        &tmp.path().join("recipes/latest.toml"),
        r#"[image]
name = "other"
tag = "2"
from = "debian:latest"
"#,
    );
    let o = run(imgforge()
        .current_dir(tmp.path())
        .args(["check", "recipes", "--no-apt"]));
    assert!(!o.status.success());
    let out = scrub(&text(&o), tmp.path());
    insta::assert_snapshot!("unpinned_inputs", out);
    assert!(!tmp.path().join("recipes/imgforge.lock").exists());
    // `lock` and `build` refuse the same tree and write nothing either.
    for cmd in [
        vec!["lock", "recipes", "--no-apt"],
        vec!["build", "recipes", "--no-apt", "--out", "o"],
    ] {
        let o = run(imgforge().current_dir(tmp.path()).args(&cmd));
        assert!(!o.status.success());
        assert!(text(&o).contains("recipes/web.toml:4:8"), "{}", text(&o));
    }
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "nothing but base/ and recipes/: {names:?}");
    assert!(!tmp.path().join("recipes/imgforge.lock").exists());
}

#[test]
fn broken_toml_and_unknown_fields_are_errors_with_location() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("base/base.toml"), BASE);
    write(
        &tmp.path().join("recipes/a.toml"),
        "[image]\nname = \"a\"\ntag = \"1\"\ncolour = \"blue\"\n",
    );
    write(&tmp.path().join("recipes/b.toml"), "[image\nname = \"b\"\n");
    let o = run(imgforge()
        .current_dir(tmp.path())
        .args(["check", "recipes", "--no-apt"]));
    assert!(!o.status.success());
    let out = scrub(&text(&o), tmp.path());
    insta::assert_snapshot!("broken_toml", out);
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn examples_check_and_lock_deterministically() {
        let Some(mirror) = crate::common::examples_mirror() else {
            return;
        };
        let tmp = copy_examples();
        let m = mirror.to_str().unwrap();
        let o = run(imgforge()
            .current_dir(tmp.path())
            .args(["check", "recipes", "--mirror", m, "--no-apt"]));
        assert!(o.status.success(), "{}", text(&o));
        let o = run(imgforge()
            .current_dir(tmp.path())
            .args(["lock", "recipes", "--mirror", m, "--no-apt"]));
        assert!(o.status.success(), "{}", text(&o));
        let lock_path = tmp.path().join("recipes/imgforge.lock");
        let first = std::fs::read(&lock_path).unwrap();
        std::fs::remove_file(&lock_path).unwrap();
        let o = run(imgforge()
            .current_dir(tmp.path())
            .args(["lock", "recipes", "--mirror", m, "--no-apt"]));
        assert!(o.status.success(), "{}", text(&o));
        let second = std::fs::read(&lock_path).unwrap();
        assert_eq!(first, second, "lock files differ between runs");

        let lock: toml::Value = toml::from_str(std::str::from_utf8(&first).unwrap()).unwrap();
        let closure = |name: &str, stage: &str| -> Vec<String> {
            lock["image"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"].as_str() == Some(name) && i["stage"].as_str() == Some(stage))
                .unwrap_or_else(|| panic!("{name} {stage} in lock"))["package"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        let base = closure("base", "runtime");
        assert!(base.contains(&"libc6".to_string()) && base.contains(&"base-files".to_string()));
        assert!(
            base.contains(&"mawk".to_string()),
            "pinned awk provider wins: {base:?}"
        );
        assert!(closure("hello", "build").contains(&"gcc-12".to_string()));
        assert!(!closure("hello", "runtime").contains(&"gcc-12".to_string()));
        // The committed lock matches the fixture resolution.
        let committed = std::fs::read(root().join("recipes/imgforge.lock")).unwrap();
        assert_eq!(
            committed, first,
            "recipes/imgforge.lock is out of date: run `imgforge lock recipes --mirror <../shared/debian + ../shared/debian-essential>` (see README)"
        );
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn locked_fails_after_a_pin_changes_and_names_the_package() {
        let Some(mirror) = crate::common::examples_mirror() else {
            return;
        };
        let tmp = copy_examples();
        let m = mirror.to_str().unwrap();
        let o = run(imgforge()
            .current_dir(tmp.path())
            .args(["lock", "recipes", "--mirror", m, "--no-apt", "--locked"]));
        assert!(
            o.status.success(),
            "the committed lock is current: {}",
            text(&o)
        );
        // Pin python to a version the mirror does not have -> resolution error.
        let p = tmp.path().join("recipes/python.toml");
        let s = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            s.replace(
                "\"python3.11-minimal\" = \"3.11.2-6+deb12u9\"",
                "\"python3.11-minimal\" = \"3.11.2-6+deb12u9\"\nlibexpat1 = \"2.5.0-1+deb12u5\"",
            ),
        )
        .unwrap();
        let o = run(imgforge()
            .current_dir(tmp.path())
            .args(["lock", "recipes", "--mirror", m, "--no-apt", "--locked"]));
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains("out of date") && t.contains("libexpat1"), "{t}");
        let o = run(imgforge().current_dir(tmp.path()).args([
            "build", "recipes", "--mirror", m, "--no-apt", "--locked", "--out", "o",
        ]));
        assert!(!o.status.success());
        assert!(text(&o).contains("libexpat1"), "{}", text(&o));
        assert!(!tmp.path().join("o").exists());
    }
}

#[test]
fn a_deb_that_does_not_match_its_index_checksum_is_refused() {
    use crate::debgen::*;
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror(
        &tmp.path().join("mirror"),
        &[Deb::new("tiny", "1.0").entry(T::File("./usr/share/tiny", b"hello\n", 0o644))],
    );
    // Corrupt the pool file after indexing.
    let deb = std::fs::read_dir(m.join("pool"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&deb).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&deb, bytes).unwrap();
    write(
        &tmp.path().join("base/base.toml"),
        "[image]\nname = \"base\"\ntag = \"1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n[packages]\ntiny = \"1.0\"\n",
    );
    std::fs::create_dir_all(tmp.path().join("recipes")).unwrap();
    let o = run(imgforge().current_dir(tmp.path()).args([
        "build",
        "recipes",
        "--mirror",
        m.to_str().unwrap(),
        "--no-apt",
        "--out",
        "o",
    ]));
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("checksum mismatch") && t.contains("tiny_1.0_amd64.deb"),
        "{t}"
    );
    assert!(
        t.contains("expected sha256") && t.contains("actual   sha256"),
        "{t}"
    );
    assert!(!tmp.path().join("o").exists(), "nothing written");
}

/// usrmerge converts a split-/usr root; imgforge's roots are merged from
/// the start, so a recipe naming it is refused with its file and line.
#[test]
fn a_recipe_naming_usrmerge_is_refused_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("base/base.toml"), BASE);
    write(
        &tmp.path().join("recipes/app.toml"),
        "[image]\nname = \"app\"\ntag = \"1\"\n\n[packages]\nusrmerge = \"37~deb12u1\"\n",
    );
    let o = run(imgforge()
        .current_dir(tmp.path())
        .args(["check", "recipes", "--no-apt"]));
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("app.toml:6"), "{t}");
    assert!(t.contains("usrmerge converts a split-/usr system"), "{t}");
    assert!(t.contains("usr-is-merged"), "{t}");
}

/// The locked packages of `name`'s `stage`: name -> reason.
fn locked(
    lock: &toml::Value,
    name: &str,
    stage: &str,
) -> std::collections::BTreeMap<String, String> {
    let img = lock["image"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str() == Some(name) && i["stage"].as_str() == Some(stage))
        .unwrap_or_else(|| panic!("{name} ({stage}) not in the lock"));
    img.get("package")
        .and_then(|p| p.as_array())
        .map(|ps| ps.iter())
        .into_iter()
        .flatten()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("name"), s("reason"))
        })
        .collect()
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    /// `essential = true` in one image ships the sources' Essential set in
    /// that image only (what the base has is not repeated), marked in the
    /// lock; turning it off makes `lock --locked` name the image.
    fn essential_in_one_image_ships_the_essential_set_there_only() {
        let Some(mirror) = examples_mirror() else {
            return;
        };
        let tree = copy_examples();
        let slim = "[image]\nname = \"slim\"\ntag = \"1\"\nessential = true\n\n[packages]\nlibtirpc-common = \"1.3.3+ds-1\"\n";
        write(&tree.path().join("recipes/slim.toml"), slim);
        let lock_cmd = |extra: &[&str]| {
            run(imgforge()
                .current_dir(tree.path())
                .args(["lock", "recipes", "--no-apt", "--mirror"])
                .arg(&mirror)
                .args(extra))
        };
        let o = lock_cmd(&[]);
        assert!(o.status.success(), "{}", text(&o));
        let lock: toml::Value =
            toml::from_str(&std::fs::read_to_string(tree.path().join("recipes/imgforge.lock")).unwrap())
                .unwrap();
        let slim = locked(&lock, "slim", "runtime");
        let base = locked(&lock, "base", "runtime");
        for p in ["dash", "bash", "coreutils", "sed", "grep", "usr-is-merged"] {
            assert_eq!(slim.get(p).map(String::as_str), Some("Essential (or usr-is-merged)"), "{p}: {slim:?}");
        }
        assert_eq!(slim.get("libtirpc-common").map(String::as_str), Some("pinned"));
        for p in base.keys() {
            assert!(!slim.contains_key(p), "{p} is in the base and in slim");
        }
        assert!(!slim.contains_key("usrmerge"), "{slim:?}");
        // The other images stay as they were: no shell in hello.
        assert!(!locked(&lock, "hello", "runtime").contains_key("dash"));
        let o = lock_cmd(&["--locked"]);
        assert!(o.status.success(), "{}", text(&o));
        write(&tree.path().join("recipes/slim.toml"), &slim_text_without_essential());
        let o = lock_cmd(&["--locked"]);
        assert!(!o.status.success());
        assert!(text(&o).contains("slim (runtime)"), "{}", text(&o));
    }
}

fn slim_text_without_essential() -> String {
    "[image]\nname = \"slim\"\ntag = \"1\"\n\n[packages]\nlibtirpc-common = \"1.3.3+ds-1\"\n".into()
}
