//! A base that starts from a vendor image pinned by digest in a local layout.

use crate::common::*;
use crate::debgen::*;
use std::path::Path;

fn tree(dir: &Path, base_toml: &str) {
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(dir.join("base/base.toml"), base_toml).unwrap();
}

fn index(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap()
}

fn manifest(out: &Path, digest: &str) -> serde_json::Value {
    let p = out
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn base_from_a_pinned_vendor_layout_keeps_its_layers_and_checks_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror(
        &tmp.path().join("mirror"),
        &[
            Deb::new("vendorpkg", "1.0").entry(T::File(
                "./usr/share/vendor.txt",
                b"vendor\n",
                0o644,
            )),
            Deb::new("ourpkg", "2.0").entry(T::File("./usr/share/ours.txt", b"ours\n", 0o644)),
        ],
    );
    let mstr = m.to_str().unwrap();
    // The "vendor" image: a scratch base with one package.
    let v = tmp.path().join("vendor");
    tree(
        &v,
        "[image]\nname = \"vendor\"\ntag = \"1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n[packages]\nvendorpkg = \"1.0\"\n",
    );
    let o = run(imgforge()
        .current_dir(&v)
        .args(["build", "recipes", "--mirror", mstr, "--no-apt", "-q"]));
    assert!(o.status.success(), "{}", text(&o));
    let vout = v.join("out");
    let vdigest = index(&vout)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let vlayers = manifest(&vout, &vdigest)["layers"].clone();

    // Our base on top of it.
    let b = tmp.path().join("ours");
    let base = format!(
        "[image]\nname = \"base\"\ntag = \"1\"\nfrom = \"vendor@{vdigest}\"\nfrom-layout = \"../../vendor/out\"\nsource-date-epoch = 0\n[packages]\nourpkg = \"2.0\"\n"
    );
    tree(&b, &base);
    let o = run(imgforge()
        .current_dir(&b)
        .args(["build", "recipes", "--mirror", mstr, "--no-apt", "-q"]));
    assert!(o.status.success(), "{}", text(&o));
    let bout = b.join("out");
    let bdigest = index(&bout)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blayers = manifest(&bout, &bdigest)["layers"]
        .as_array()
        .unwrap()
        .clone();
    // The vendor's layers, then ours (one source-package group, no root:
    // the vendor image is the root).
    assert_eq!(blayers.len(), vlayers.as_array().unwrap().len() + 1);
    assert_eq!(
        blayers[0], vlayers[0],
        "the vendor layer is kept byte for byte"
    );

    // A tampered vendor blob is refused and nothing is replaced.
    let layer = vlayers[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let lp = vout.join("blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&lp).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&lp, bytes).unwrap();
    let before = std::fs::read(bout.join("index.json")).unwrap();
    let o = run(imgforge()
        .current_dir(&b)
        .args(["build", "recipes", "--mirror", mstr, "--no-apt", "-q"]));
    assert!(!o.status.success());
    assert!(text(&o).contains(&layer), "{}", text(&o));
    assert_eq!(std::fs::read(bout.join("index.json")).unwrap(), before);

    // A tag instead of a digest is rejected by the policy.
    tree(&b, &base.replace(&format!("vendor@{vdigest}"), "vendor:1"));
    let o = run(imgforge()
        .current_dir(&b)
        .args(["check", "recipes", "--no-apt"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("not pinned by digest"), "{}", text(&o));
}
