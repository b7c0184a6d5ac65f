//! What `build` promises about its outputs beyond the layout: a zstd bundle
//! refused unless forced, base tags that match the shipped Debian release.

use crate::common::*;

#[test]
fn zstd_bundle_is_refused_with_an_explanation() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(imgforge()
        .args([
            "build",
            "no-such-recipes",
            "--compression",
            "zstd",
            "--bundle",
        ])
        .arg(tmp.path().join("b.tar"))
        .current_dir(tmp.path()));
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("zstd_bundle_refused", text(&o));
    assert!(!tmp.path().join("b.tar").exists());
    // --force gets past the check (and fails later, on the missing recipes).
    let o = run(imgforge()
        .args([
            "build",
            "no-such-recipes",
            "--compression",
            "zstd",
            "--force",
            "--bundle",
        ])
        .arg(tmp.path().join("b.tar"))
        .current_dir(tmp.path()));
    let t = text(&o);
    assert!(!o.status.success() && !t.contains("zstd"), "{t}");
    assert!(t.contains("no-such-recipes"), "{t}");
}

#[test]
fn base_tag_naming_another_point_release_is_refused() {
    let Some(fixture) = fixture() else { return };
    let tmp = copy_examples();
    let base = tmp.path().join("base/base.toml");
    let text0 = std::fs::read_to_string(&base).unwrap();
    assert!(text0.contains("tag = \"bookworm-12.15\""));
    std::fs::write(&base, text0.replace("bookworm-12.15", "bookworm-12.12")).unwrap();
    let out = tmp.path().join("out");
    let o = run(imgforge()
        .args(["build", "recipes", "--no-apt", "--locked", "--mirror"])
        .arg(&fixture)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .current_dir(tmp.path()));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let err = t
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("base_tag_mismatch", err);
    assert!(!out.exists());
}
