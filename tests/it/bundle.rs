//! `imgforge bundle`: a courier bundle of a build output (synthetic
//! packages, no fixture needed): deterministic bytes, offline verification
//! that refuses one changed byte of a blob, the manifest or the signature
//! and a truncated file (exit 3, naming the entry and the check), and a
//! delta after one package update that is a fraction of the full bundle and
//! verifies against its base only.

use crate::common::*;
use crate::debgen::{Deb, T};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Incompressible bytes (a xorshift stream), so layer sizes are real.
fn noise(n: usize, seed: u64) -> &'static [u8] {
    let mut x = seed | 1;
    let v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Box::leak(v.into_boxed_slice())
}

/// tool 1.1's program: a `#!` script (the entrypoint lint wants one it can
/// start), running itself.
fn script_tool() -> &'static [u8] {
    let b = [&b"#!/usr/bin/tool\n"[..], noise(40_000, 4)].concat();
    Box::leak(b.into_boxed_slice())
}

/// The changelog of tool 1.1: the entry after 1.0 names one CVE; the
/// older one's must not be reported.
const TOOL_CHANGELOG: &str = "tool (1.1) unstable; urgency=high\n\n  * Fix a buffer overflow (CVE-2026-12345).\n\n -- A Maintainer <a@example.org>  Mon, 02 Nov 2026 00:00:00 +0000\n\ntool (1.0) unstable; urgency=low\n\n  * First release; fixes CVE-2020-0001.\n\n -- A Maintainer <a@example.org>  Mon, 02 Mar 2026 00:00:00 +0000\n";

/// tool 1.1 declares a license (1.0 declared none).
const TOOL_COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: tool\n\nFiles: *\nCopyright: 2026 A Maintainer\nLicense: Expat\n\nLicense: Expat\n Permission is hereby granted, free of charge, to any person obtaining a\n copy of this software and associated documentation files (the \"Software\"),\n to deal in the Software without restriction.\n";

/// A tree (base + one image) and a mirror holding `tool` 1.0 and 1.1;
/// the recipe pins `tool_version`.
fn tree(dir: &Path, tool_version: &str) {
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(
        dir.join("base/base.toml"),
        "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
         [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n[packages]\nlibbig = \"1.0\"\n",
    )
    .unwrap();
    // 1.1 runs the tool: the run command changes with the update.
    let config = match tool_version {
        "1.0" => "",
        _ => "\n[config]\nentrypoint = [\"/usr/bin/tool\"]\n",
    };
    std::fs::write(
        dir.join("recipes/app.toml"),
        format!(
            "[image]\nname = \"app\"\ntag = \"2.0\"\n\n[packages]\nlibbig2 = \"1.0\"\ntool = \"{tool_version}\"\n{config}"
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.join("recipes/imgforge.lock"));
    let debs = [
        Deb::new("libbig", "1.0").entry(T::File("./usr/share/big", noise(3 << 20, 1), 0o644)),
        Deb::new("libbig2", "1.0").entry(T::File("./usr/share/big2", noise(2 << 20, 2), 0o644)),
        Deb::new("tool", "1.0").entry(T::File("./usr/bin/tool", noise(40_000, 3), 0o755)),
        Deb::new("tool", "1.1")
            .entry(T::File("./usr/bin/tool", script_tool(), 0o755))
            .entry(T::File(
                "./usr/share/doc/tool/changelog.Debian.gz",
                Box::leak(crate::debgen::gz(TOOL_CHANGELOG.as_bytes()).into_boxed_slice()),
                0o644,
            ))
            .entry(T::File(
                "./usr/share/doc/tool/copyright",
                TOOL_COPYRIGHT.as_bytes(),
                0o644,
            )),
    ];
    crate::debgen::mirror(&dir.join("mirror"), &debs);
}

fn imgforge_in(dir: &Path, args: &[&str]) -> Output {
    run(imgforge().current_dir(dir).args(args))
}

fn build(dir: &Path, out: &str) {
    let o = imgforge_in(
        dir,
        &[
            "build", "recipes", "--mirror", "mirror", "--no-apt", "--cache", "cache", "--out", out,
        ],
    );
    assert!(o.status.success(), "build failed:\n{}", text(&o));
}

fn bundle(dir: &Path, args: &[&str]) -> PathBuf {
    let o = imgforge_in(dir, &[&["bundle"], args].concat());
    assert!(o.status.success(), "bundle failed:\n{}", text(&o));
    dir.join(args[2])
}

/// `bundle verify FILE [args]`: (exit code, output).
fn verify(dir: &Path, file: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = run(imgforge()
        .current_dir(dir)
        .args(["bundle", "verify"])
        .arg(file)
        .args(args));
    (o.status.code(), text(&o))
}

/// The byte range of entry `name`'s data in the tar `file`.
fn entry_range(file: &Path, name: &str) -> (u64, u64) {
    let mut ar = tar::Archive::new(std::fs::File::open(file).unwrap());
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            return (e.raw_file_position(), e.size());
        }
    }
    panic!("no entry {name} in {}", file.display());
}

/// A copy of `file` with `edit` applied to its bytes.
fn tampered(file: &Path, label: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(file).unwrap();
    edit(&mut b);
    let p = file.with_file_name(format!("tampered-{label}.tar"));
    std::fs::write(&p, b).unwrap();
    p
}

fn manifest(file: &Path) -> serde_json::Value {
    let (at, size) = entry_range(file, "imgforge-bundle.json");
    let b = std::fs::read(file).unwrap();
    serde_json::from_slice(&b[at as usize..(at + size) as usize]).unwrap()
}

/// The largest layer of image `reference` in the bundle's manifest.
fn a_layer(file: &Path, reference: &str) -> String {
    let m = manifest(file);
    let img = m["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == reference)
        .unwrap();
    let sizes: std::collections::BTreeMap<&str, u64> = m["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["digest"].as_str().unwrap(), b["size"].as_u64().unwrap()))
        .collect();
    let l = img["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .max_by_key(|l| sizes[l])
        .unwrap();
    format!("blobs/sha256/{}", l.trim_start_matches("sha256:"))
}

fn refused(r: (Option<i32>, String), entry: &str, check: &str) {
    let (code, t) = r;
    assert_eq!(code, Some(3), "not refused (exit 3):\n{t}");
    let first = t
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        first.contains(entry) && first.contains(check),
        "the refusal does not name {entry:?} and {check:?}:\n{t}"
    );
}

/// Same build, same bundle bytes (twice, and from a second build of the
/// same tree); it verifies; it is a docker archive and an OCI layout; it
/// carries the SBOMs, reports and provenance; and one flipped byte in a
/// blob, or a truncation anywhere, is refused naming the entry and check.
#[test]
fn bundle_is_deterministic_verifies_and_refuses_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, "1.0");
    build(dir, "out");
    let a = bundle(dir, &["out", "-o", "a.tar"]);
    let b = bundle(dir, &["out", "-o", "b.tar"]);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two bundles of one output differ"
    );
    build(dir, "out2");
    let c = bundle(dir, &["out2", "-o", "c.tar"]);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&c).unwrap(),
        "bundles of two builds differ"
    );

    let (code, t) = verify(dir, &a, &[]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("verified release") && t.contains("2 image(s)") && t.contains("unsigned"),
        "{t}"
    );

    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&a).unwrap())
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    assert_eq!(names[0], "imgforge-bundle.json");
    for want in [
        "manifest.json",
        "index.json",
        "oci-layout",
        "imgforge-record.json",
        "sbom/app.spdx.json",
        "legal/app.md",
        "attest/app.provenance.json",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    let docker: serde_json::Value = {
        let (at, size) = entry_range(&a, "manifest.json");
        serde_json::from_slice(&std::fs::read(&a).unwrap()[at as usize..(at + size) as usize])
            .unwrap()
    };
    assert_eq!(docker[0]["RepoTags"][0], "app:2.0", "{docker}");
    for l in docker[0]["Layers"].as_array().unwrap() {
        assert!(
            names.iter().any(|n| n == l.as_str().unwrap()),
            "docker layer {l} missing"
        );
    }

    let layer = a_layer(&a, "app:2.0");
    let (at, size) = entry_range(&a, &layer);
    let flipped = tampered(&a, "blob", |b| b[(at + size / 2) as usize] ^= 1);
    refused(verify(dir, &flipped, &[]), &layer, "sha256");

    let len = std::fs::metadata(&a).unwrap().len();
    for (label, cut) in [
        ("mid-blob", at + size / 2),
        ("entry-end", at + size.div_ceil(512) * 512),
        ("trailer", len - 512),
        ("header", at - 100),
    ] {
        let cut_file = tampered(&a, label, |b| b.truncate(cut as usize));
        let (code, t) = verify(dir, &cut_file, &[]);
        assert_eq!(
            code,
            Some(3),
            "truncated at {label} ({cut} of {len}) not refused:\n{t}"
        );
        assert!(t.contains("help:"), "{t}");
    }
    // Nothing extra may ride along: a tar with one more entry is refused.
    let extra = tampered(&a, "extra", |b| {
        let end = b.len() - 1024;
        let mut h = tar::Header::new_ustar();
        h.set_path("evil").unwrap();
        h.set_size(1);
        h.set_cksum();
        b.truncate(end);
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&[b'x'; 512]);
        b.extend_from_slice(&[0; 1024]);
    });
    refused(verify(dir, &extra, &[]), "evil", "listed");
}

/// A signed bundle verifies with the key; a changed byte in the manifest or
/// in the signature, a bundle without a signature, and another key are refused.
#[test]
fn bundle_signature_covers_the_manifest() {
    if !require_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, "1.0");
    build(dir, "out");
    let o = run(std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["genpkey", "-algorithm", "ed25519", "-out", "key.pem"]));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["pkey", "-pubout", "-in", "key.pem", "-out", "key.pub.pem"]));
    assert!(o.status.success(), "{}", text(&o));
    let s = bundle(
        dir,
        &[
            "out",
            "-o",
            "s.tar",
            "--sign-key",
            "key.pem",
            "--release",
            "2026.12",
        ],
    );
    let u = bundle(dir, &["out", "-o", "u.tar", "--release", "2026.12"]);
    let (code, t) = verify(dir, &s, &["--key", "key.pub.pem"]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("signature verified") && t.contains("release 2026.12"),
        "{t}"
    );

    let (at, size) = entry_range(&s, "imgforge-bundle.json");
    let m = tampered(&s, "manifest", |b| {
        let text = &b[at as usize..(at + size) as usize];
        let i = text.windows(7).position(|w| w == b"2026.12").unwrap();
        b[at as usize + i + 6] = b'3';
    });
    refused(
        verify(dir, &m, &["--key", "key.pub.pem"]),
        "imgforge-bundle.dsse.json",
        "signature",
    );

    let (at, size) = entry_range(&s, "imgforge-bundle.dsse.json");
    let sig = tampered(&s, "sig", |b| {
        let text = &b[at as usize..(at + size) as usize];
        let i = text.windows(7).position(|w| w == b"\"sig\": ").unwrap() + 10;
        let c = &mut b[at as usize + i];
        *c = if *c == b'A' { b'B' } else { b'A' };
    });
    let (code, t) = verify(dir, &sig, &["--key", "key.pub.pem"]);
    assert_eq!(code, Some(3), "{t}");
    assert!(t.contains("signature"), "{t}");

    refused(
        verify(dir, &u, &["--key", "key.pub.pem"]),
        "imgforge-bundle.dsse.json",
        "signature",
    );
    let o = run(std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["genpkey", "-algorithm", "ed25519", "-out", "other.pem"]));
    assert!(o.status.success());
    let o = run(std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "pkey",
            "-pubout",
            "-in",
            "other.pem",
            "-out",
            "other.pub.pem",
        ]));
    assert!(o.status.success());
    let (code, t) = verify(dir, &s, &["--key", "other.pub.pem"]);
    assert_eq!(code, Some(3), "{t}");
    assert!(t.contains("does not verify"), "{t}");
}

/// After one package update, the delta leaves out every layer the first
/// release holds: it is a small fraction of the full bundle, verifies on
/// its own and against its base, and is refused against another base.
#[test]
fn bundle_delta_after_one_update_is_small_and_verifies_against_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, "1.0");
    build(dir, "out1");
    let r1 = bundle(dir, &["out1", "-o", "r1.tar", "--release", "r1"]);
    tree(dir, "1.1");
    build(dir, "out2");
    let full = bundle(dir, &["out2", "-o", "r2-full.tar", "--release", "r2"]);
    let delta = bundle(
        dir,
        &[
            "out2",
            "-o",
            "r2.tar",
            "--release",
            "r2",
            "--since",
            "r1.tar",
        ],
    );
    let (f, d) = (
        std::fs::metadata(&full).unwrap().len(),
        std::fs::metadata(&delta).unwrap().len(),
    );
    eprintln!(
        "full bundle {f} bytes, delta {d} bytes ({:.1}%)",
        d as f64 * 100.0 / f as f64
    );
    assert!(
        d * 10 < f,
        "delta {d} bytes is not under 10% of the full {f}"
    );
    let m = manifest(&delta);
    assert_eq!(m["base"]["release"], "r1", "{m}");
    assert!(
        m["base"]["manifest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{m}"
    );

    let (code, t) = verify(dir, &delta, &[]);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("base not checked"), "{t}");
    let (code, t) = verify(dir, &delta, &["--base", "r1.tar"]);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("left-out blob(s) are the base's"), "{t}");
    let o = run(imgforge().current_dir(dir).args([
        "bundle", "verify", "r2.tar", "--base", "r1.tar", "--format", "json",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["release"], "r2", "{v}");
    assert_eq!(
        (
            v["base"]["release"].as_str(),
            v["base"]["checked"].as_bool()
        ),
        (Some("r1"), Some(true)),
        "{v}"
    );
    assert!(v["blobsFromBase"].as_u64().unwrap() > 0, "{v}");
    // The base given as its manifest file works the same.
    let (at, size) = entry_range(&r1, "imgforge-bundle.json");
    let b = std::fs::read(&r1).unwrap();
    std::fs::write(dir.join("r1.json"), &b[at as usize..(at + size) as usize]).unwrap();
    let (code, t) = verify(dir, &delta, &["--base", "r1.json"]);
    assert_eq!(code, Some(0), "{t}");
    // Another release as the base is refused, naming both.
    let (code, t) = verify(dir, &delta, &["--base", "r2-full.tar"]);
    assert_eq!(code, Some(3), "{t}");
    assert!(t.contains("release r1") && t.contains("release r2"), "{t}");
    // A delta of the same output against itself carries no layer.
    let none = bundle(dir, &["out2", "-o", "none.tar", "--since", "r2-full.tar"]);
    let m = manifest(&none);
    assert!(
        m["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["included"] == false
                || m["images"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["manifest"] == b["digest"] || i["config"] == b["digest"])),
        "{m}"
    );
}

/// Give the tree's images names no other test loads into docker.
fn rename_for_docker(dir: &Path) {
    for (f, from, to) in [
        (
            "base/base.toml",
            "name = \"base\"",
            "name = \"imgforge-bundle-test-base\"",
        ),
        (
            "recipes/app.toml",
            "name = \"app\"",
            "name = \"imgforge-bundle-test-app\"",
        ),
    ] {
        let p = dir.join(f);
        let t = std::fs::read_to_string(&p).unwrap().replace(from, to);
        std::fs::write(&p, t).unwrap();
    }
}

fn install(dir: &Path, file: &str, args: &[&str]) -> Output {
    imgforge_in(
        dir,
        &[&["bundle", "install", file, "--docker"], args].concat(),
    )
}

needs! { [has_docker]
    "needs `docker` on PATH";
    /// `bundle install --docker`: a delta fails to load on a daemon without
    /// its base; the full release installs, then the delta on top of it, and
    /// docker holds the new release's images (image id = config digest).
    fn bundle_install_docker_full_then_delta() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        tree(dir, "1.0");
        rename_for_docker(dir);
        build(dir, "out1");
        bundle(dir, &["out1", "-o", "r1.tar", "--release", "r1"]);
        tree(dir, "1.1");
        rename_for_docker(dir);
        build(dir, "out2");
        let r2 = bundle(dir, &["out2", "-o", "r2.tar", "--release", "r2", "--since", "r1.tar"]);
        let refs = ["imgforge-bundle-test-app:2.0", "imgforge-bundle-test-base:t1"];
        let ids: Vec<String> = manifest(&r2)["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["config"].as_str().unwrap().to_string())
            .collect();
        struct Cleanup(Vec<String>);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::process::Command::new("docker").arg("rmi").args(&self.0).output();
            }
        }
        let r1_ids = manifest(&dir.join("r1.tar"))["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["config"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        let _cleanup = Cleanup(refs.iter().map(|r| r.to_string()).chain(r1_ids).collect());
        let _ = std::process::Command::new("docker").arg("rmi").args(refs).output();
        let o = install(dir, "r2.tar", &[]);
        assert_eq!(o.status.code(), Some(1), "a delta loaded without its base:\n{}", text(&o));
        assert!(text(&o).contains("release r1"), "{}", text(&o));
        let o = install(dir, "r1.tar", &[]);
        assert!(o.status.success(), "{}", text(&o));
        // What the daemon holds, as the site would send it back: a delta
        // since that inventory leaves out the same layers (by chain ID).
        let o = imgforge_in(dir, &["bundle", "inventory", "--docker", "-o", "site.json"]);
        assert!(o.status.success(), "{}", text(&o));
        let inv: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("site.json")).unwrap()).unwrap();
        assert_eq!(inv["kind"], "docker", "{inv:#}");
        assert!(inv["images"].as_array().unwrap().iter().any(|i| i["reference"] == refs[0]));
        let r2i = bundle(dir, &["out2", "-o", "r2i.tar", "--release", "r2", "--since", "site.json"]);
        let included = |f: &Path| -> Vec<serde_json::Value> {
            manifest(f)["blobs"].as_array().unwrap().iter().filter(|b| b["included"] == true).cloned().collect()
        };
        assert_eq!(included(&r2i), included(&r2), "the inventory's delta differs from the release's");
        let o = install(dir, "r2i.tar", &[]);
        assert!(o.status.success(), "{}", text(&o));
        let o = install(dir, "r2.tar", &["--base", "r1.tar"]);
        assert!(o.status.success(), "{}", text(&o));
        let o = run(std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .args(refs));
        assert!(o.status.success(), "{}", text(&o));
        let got: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
        assert_eq!(got, ids, "docker holds other images than release r2's");
    }
}

/// `bundle install FILE --to DEST --format json`: (exit code, output, summary).
fn install_to(dir: &Path, file: &str, dest: &str) -> (Option<i32>, String, serde_json::Value) {
    let o = imgforge_in(
        dir,
        &["bundle", "install", file, "--to", dest, "--format", "json"],
    );
    let v = serde_json::from_slice(&o.stdout).unwrap_or_default();
    (o.status.code(), text(&o), v)
}

/// The tags the registry lists for `repo` (none when it does not know it).
fn registry_tags(host: &str, repo: &str) -> Vec<String> {
    match ureq::get(format!("http://{host}/v2/{repo}/tags/list")).call() {
        Ok(mut r) => {
            let v: serde_json::Value =
                serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
            v["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

/// The sha256 of the manifest the registry serves for `repo:reference`.
fn served_manifest(host: &str, repo: &str, reference: &str) -> String {
    use sha2::Digest;
    let mut r = ureq::get(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .unwrap_or_else(|e| panic!("GET {repo}:{reference}: {e}"));
    let b = r.body_mut().read_to_vec().unwrap();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&b)))
}

/// Each image of the bundle `file`: (repository under `dest`, tag, manifest digest).
fn bundle_images(file: &Path, ns: &str) -> Vec<(String, String, String)> {
    manifest(file)["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let (name, tag) = i["reference"].as_str().unwrap().rsplit_once(':').unwrap();
            let d = i["manifest"].as_str().unwrap().to_string();
            (format!("{ns}/{name}"), tag.to_string(), d)
        })
        .collect()
}

needs! { [has_docker_registry, has_skopeo] "needs `docker-registry` and `skopeo` on PATH";
    /// `bundle install --to`: a delta onto a registry without its base is
    /// refused naming a left-out blob, with no tag written; the full release
    /// installs (the registry serves the bundle's manifest digests), then
    /// the delta on top uploads only what changed, and skopeo copies the
    /// updated image out of the registry whole.
    fn bundle_install_to_registry_full_then_delta() {
        let Some(reg) = crate::push::registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        tree(dir, "1.0");
        build(dir, "out1");
        let r1 = bundle(dir, &["out1", "-o", "r1.tar", "--release", "r1"]);
        tree(dir, "1.1");
        build(dir, "out2");
        let r2 = bundle(dir, &["out2", "-o", "r2.tar", "--release", "r2", "--since", "r1.tar"]);
        let dest = reg.destination("site");
        let ns = dest.trim_start_matches(&format!("{}/", reg.host)).to_string();

        let (code, t, _) = install_to(dir, "r2.tar", &dest);
        assert_eq!(code, Some(3), "a delta installed without its base:\n{t}");
        let left: Vec<String> = manifest(&r2)["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["included"] == false)
            .map(|b| b["digest"].as_str().unwrap().to_string())
            .collect();
        assert!(!left.is_empty());
        assert!(
            left.iter().any(|d| t.contains(&format!("blob {d}"))) && t.contains("release r1"),
            "the refusal names no left-out blob or base:\n{t}"
        );
        for (repo, _, _) in bundle_images(&r2, &ns) {
            assert_eq!(registry_tags(&reg.host, &repo), Vec::<String>::new(), "{repo} tagged");
        }

        let (code, t, full) = install_to(dir, "r1.tar", &dest);
        assert_eq!(code, Some(0), "{t}");
        for (repo, tag, digest) in bundle_images(&r1, &ns) {
            assert_eq!(served_manifest(&reg.host, &repo, &tag), digest, "{repo}:{tag}");
        }
        let (code, t, delta) = install_to(dir, "r2.tar", &dest);
        assert_eq!(code, Some(0), "{t}");
        for (repo, tag, digest) in bundle_images(&r2, &ns) {
            assert_eq!(served_manifest(&reg.host, &repo, &tag), digest, "{repo}:{tag}");
        }
        let (f, d) = (
            full["bytesUploaded"].as_u64().unwrap(),
            delta["bytesUploaded"].as_u64().unwrap(),
        );
        assert!(f > 0 && d * 10 < f, "delta uploaded {d} bytes, full {f}");
        assert!(delta["blobsSkipped"].as_u64().unwrap() > 0, "{delta}");
        // Again: nothing to send, no tag to move.
        let (code, t, again) = install_to(dir, "r2.tar", &dest);
        assert_eq!(code, Some(0), "{t}");
        assert_eq!(again["bytesUploaded"], 0, "{again}");
        assert!(again["images"].as_array().unwrap().iter().all(|i| i["tagged"] == false));

        let o = run(std::process::Command::new("skopeo").current_dir(dir).args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/{ns}/app:2.0", reg.host),
            "oci:pulled:app",
        ]));
        assert!(o.status.success(), "skopeo could not copy the image:\n{}", text(&o));
    }
}

/// An entry's bytes.
fn entry(file: &Path, name: &str) -> Vec<u8> {
    let (at, size) = entry_range(file, name);
    std::fs::read(file).unwrap()[at as usize..(at + size) as usize].to_vec()
}

/// The report's image `reference`.
fn report_image(report: &serde_json::Value, reference: &str) -> serde_json::Value {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == reference)
        .unwrap_or_else(|| panic!("no {reference} in {report:#}"))
        .clone()
}

/// The upgrade report a delta carries: tool 1.0 → 1.1 with the CVE its
/// changelog names since 1.0 (not the older one), the license it brought,
/// the new layer and bytes, the changed entrypoint; the base unchanged.
/// Markdown, HTML and JSON, listed and verified like every entry, the same
/// bytes each time; `--since` a build record reports the same moves.
#[test]
fn bundle_carries_an_upgrade_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, "1.0");
    build(dir, "out1");
    let r1 = bundle(dir, &["out1", "-o", "r1.tar", "--release", "r1"]);
    tree(dir, "1.1");
    build(dir, "out2");
    let r2 = bundle(
        dir,
        &[
            "out2",
            "-o",
            "r2.tar",
            "--release",
            "r2",
            "--since",
            "r1.tar",
        ],
    );
    let again = bundle(
        dir,
        &[
            "out2",
            "-o",
            "r2b.tar",
            "--release",
            "r2",
            "--since",
            "r1.tar",
        ],
    );
    assert!(std::fs::read(&r2).unwrap() == std::fs::read(&again).unwrap());
    let (code, t) = verify(dir, &r2, &[]);
    assert_eq!(code, Some(0), "{t}");

    let report: serde_json::Value =
        serde_json::from_slice(&entry(&r2, "report/upgrade.json")).unwrap();
    assert_eq!(report["reportVersion"], 1, "{report:#}");
    assert_eq!(report["base"]["release"], "r1", "{report:#}");
    let app = report_image(&report, "app:2.0");
    assert_eq!(app["status"], "changed", "{app:#}");
    assert_eq!(
        app["packages"],
        serde_json::json!([{"name": "tool", "old": "1.0", "new": "1.1", "cves": ["CVE-2026-12345"]}]),
        "{app:#}"
    );
    assert_eq!(
        app["runCommand"]["new"]["entrypoint"],
        serde_json::json!(["/usr/bin/tool"]),
        "{app:#}"
    );
    assert!(app["runCommand"]["old"]["entrypoint"].is_null(), "{app:#}");
    let added = app["licensesAdded"].as_array().unwrap();
    assert!(
        !added.is_empty() && !added.iter().any(|l| l == "NOASSERTION"),
        "{app:#}"
    );
    let (new, all) = (
        app["bytesNew"].as_u64().unwrap(),
        app["bytes"].as_u64().unwrap(),
    );
    assert!(
        app["layersNew"].as_u64().unwrap() >= 1 && new > 0 && new * 10 < all,
        "{app:#}"
    );
    let base = report_image(&report, "base:t1");
    assert_eq!(
        (base["status"].as_str(), base["layersNew"].as_u64()),
        (Some("unchanged"), Some(0)),
        "{base:#}"
    );
    assert_eq!(base["packages"], serde_json::json!([]), "{base:#}");
    assert!(base["runCommand"].is_null(), "{base:#}");

    let md = String::from_utf8(entry(&r2, "report/upgrade.md")).unwrap();
    assert!(md.contains("# Upgrade to release r2"), "{md}");
    assert!(md.contains("| tool | 1.0 | 1.1 | CVE-2026-12345 |"), "{md}");
    assert!(!md.contains("CVE-2020-0001"), "{md}");
    let html = String::from_utf8(entry(&r2, "report/upgrade.html")).unwrap();
    assert!(
        html.contains("<td>CVE-2026-12345</td>") && html.contains("/usr/bin/tool"),
        "{html}"
    );

    // A full bundle knows no previous release: every package, no CVEs.
    let first: serde_json::Value =
        serde_json::from_slice(&entry(&r1, "report/upgrade.json")).unwrap();
    let app1 = report_image(&first, "app:2.0");
    assert_eq!(app1["packagesCompared"], false, "{app1:#}");
    assert!(
        app1["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "tool" && p["new"] == "1.0" && p["old"].is_null())
    );

    // --since the previous build's record: the same moves, and a delta.
    let rec = bundle(
        dir,
        &[
            "out2",
            "-o",
            "r2rec.tar",
            "--release",
            "r2",
            "--since",
            "out1/imgforge-record.json",
        ],
    );
    let by_rec: serde_json::Value =
        serde_json::from_slice(&entry(&rec, "report/upgrade.json")).unwrap();
    assert_eq!(
        report_image(&by_rec, "app:2.0")["packages"],
        app["packages"],
        "{by_rec:#}"
    );
    assert!(std::fs::metadata(&rec).unwrap().len() * 10 < std::fs::metadata(&r1).unwrap().len());
}

needs! { [has_docker_registry] "needs `docker-registry` on PATH";
    /// `bundle inventory --from`: after release 1 is installed into the
    /// registry, its inventory lists the images and blobs (the same bytes
    /// twice); a delta built `--since` it is small, verifies against it,
    /// and installs, the registry then serving release 2's manifests.
    fn bundle_inventory_of_a_registry_then_a_delta_since_it_installs() {
        let Some(reg) = crate::push::registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        tree(dir, "1.0");
        build(dir, "out1");
        let r1 = bundle(dir, &["out1", "-o", "r1.tar", "--release", "r1"]);
        let dest = reg.destination("inv");
        let ns = dest.trim_start_matches(&format!("{}/", reg.host)).to_string();
        let (code, t, _) = install_to(dir, "r1.tar", &dest);
        assert_eq!(code, Some(0), "{t}");

        for f in ["site.json", "site2.json"] {
            let o = imgforge_in(dir, &["bundle", "inventory", "--from", &dest, "-o", f]);
            assert!(o.status.success(), "{}", text(&o));
        }
        let inv_bytes = std::fs::read(dir.join("site.json")).unwrap();
        assert!(inv_bytes == std::fs::read(dir.join("site2.json")).unwrap());
        let inv: serde_json::Value = serde_json::from_slice(&inv_bytes).unwrap();
        assert_eq!((inv["inventoryVersion"].as_u64(), inv["kind"].as_str()), (Some(1), Some("registry")), "{inv:#}");
        for (repo, tag, digest) in bundle_images(&r1, &ns) {
            let img = inv["images"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["reference"] == format!("{repo}:{tag}"))
                .unwrap_or_else(|| panic!("{repo}:{tag} not in {inv:#}"));
            assert_eq!(img["manifest"], digest.as_str());
        }

        tree(dir, "1.1");
        build(dir, "out2");
        let r2 = bundle(dir, &["out2", "-o", "r2.tar", "--release", "r2", "--since", "site.json"]);
        let m = manifest(&r2);
        assert!(m["base"]["release"].as_str().unwrap().starts_with("inventory of "), "{m}");
        assert!(std::fs::metadata(&r2).unwrap().len() * 10 < std::fs::metadata(&r1).unwrap().len());
        let (code, t) = verify(dir, &r2, &["--base", "site.json"]);
        assert_eq!(code, Some(0), "{t}");
        let (code, t) = verify(dir, &r2, &["--base", "r1.tar"]);
        assert_eq!(code, Some(3), "a delta verified against another base:\n{t}");
        let (code, t, _) = install_to(dir, "r2.tar", &dest);
        assert_eq!(code, Some(0), "{t}");
        for (repo, tag, digest) in bundle_images(&r2, &ns) {
            assert_eq!(served_manifest(&reg.host, &repo, &tag), digest, "{repo}:{tag}");
        }
    }
}
