//! What `build` promises about its outputs beyond the layout: a zstd bundle
//! refused unless forced, base tags that match the shipped Debian release,
//! machine-readable metadata, per-image outputs that syft accepts.

use crate::common::*;
use std::process::Command;

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

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn base_tag_naming_another_point_release_is_refused() {
        let Some(fixture) = crate::common::examples_mirror() else {
            return;
        };
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
}

#[test]
fn build_metadata_json_is_snapshotted() {
    use crate::debgen::{Deb, T};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(
        dir.join("base/base.toml"),
        "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
         [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n[packages]\ngood = \"1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("recipes/app.toml"),
        "[image]\nname = \"app\"\ntag = \"2.0\"\n\n[packages]\nextra = \"3.1\"\n",
    )
    .unwrap();
    let debs = [
        Deb::new("good", "1.0").entry(T::File("./usr/share/good", b"ok\n", 0o644)),
        Deb::new("extra", "3.1").entry(T::File("./usr/bin/extra", b"#!/bin/sh\n", 0o755)),
    ];
    crate::debgen::mirror(&dir.join("mirror"), &debs);
    let o = run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args([
            "build", "recipes", "--mirror", "mirror", "--no-apt", "--format", "json",
        ])
        .args([
            "--out",
            "out",
            "--cache",
            "cache",
            "--metadata-file",
            "meta/build.json",
        ]));
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("meta/build.json")).unwrap(),
        stdout
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // The paths and digests it names are real.
    for (_, img) in v["images"].as_object().unwrap() {
        for k in ["spdx", "cyclonedx"] {
            assert!(
                dir.join("out")
                    .join(img["sbom"][k].as_str().unwrap())
                    .is_file()
            );
        }
        let d = img["manifest"]["digest"].as_str().unwrap();
        assert!(dir.join("out/blobs/sha256").join(&d[7..]).is_file());
    }
    insta::assert_snapshot!("build_metadata", stdout);
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_syft, has_trivy]
    "needs ../shared/debian, ../shared/debian-essential, `syft` on PATH, `trivy` on PATH";
    /// syft reads every per-image output (OCI layout and docker archive): the
    /// Debian packages it finds are exactly the image's lock closure (base +
    /// runtime), the OS is detected, and no build-stage-only package appears.
    /// The same with trivy when it is installed (`.ci/run` installs it).
    fn per_image_outputs_are_accepted_by_syft() {
        use std::collections::BTreeSet;
        let Some(fixture) = crate::common::examples_mirror() else {
            return;
        };
        if !require_tool("syft") {
            return;
        }
        let tmp = copy_examples();
        let out = tmp.path().join("out");
        let o = run(imgforge()
            .args(["build", "recipes", "--no-apt", "-q", "--mirror"])
            .arg(&fixture)
            .arg("--out")
            .arg(&out)
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .current_dir(tmp.path()));
        assert!(o.status.success(), "{}", text(&o));
        let lock =
            imgforge::resolve::Lock::read(&tmp.path().join("recipes/imgforge.lock")).unwrap();
        let names = |img: &str, stage: &str| -> BTreeSet<String> {
            lock.get(img, stage)
                .map(|l| l.packages.iter().map(|p| p.name.clone()).collect())
                .unwrap_or_default()
        };
        for img in ["base", "hello", "nginx", "python"] {
            let mut want = names("base", "runtime");
            want.extend(names(img, "runtime"));
            let build_only: BTreeSet<String> =
                names(img, "build").difference(&want).cloned().collect();
            let images = out.join("images");
            for src in [
                format!("oci-dir:{}", images.join(img).display()),
                format!(
                    "docker-archive:{}",
                    images.join(format!("{img}.tar")).display()
                ),
            ] {
                let o = run(Command::new("syft").args(["scan", &src, "-o", "json", "-q"]));
                assert!(o.status.success(), "syft {src}: {}", text(&o));
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                let found: BTreeSet<String> = v["artifacts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["type"] == "deb")
                    .map(|a| a["name"].as_str().unwrap().to_string())
                    .collect();
                eprintln!(
                    "syft {src}: {} deb packages, distro {}",
                    found.len(),
                    v["distro"]["prettyName"]
                );
                assert_eq!(found, want, "{src}");
                // Our SBOM's purls are syft's, qualifiers and encoding included.
                let syft_purls: BTreeSet<String> = v["artifacts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["type"] == "deb")
                    .map(|a| a["purl"].as_str().unwrap().to_string())
                    .collect();
                let cdx: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(out.join(format!("sbom/{img}.cdx.json"))).unwrap(),
                )
                .unwrap();
                let ours: BTreeSet<String> = cdx["components"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["type"] == "library")
                    .map(|c| c["purl"].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(ours, syft_purls, "{img}: SBOM purls differ from syft's");
                assert_eq!(v["distro"]["id"], "debian", "{src}");
                assert_eq!(v["distro"]["versionID"], "12", "{src}");
                assert!(found.is_disjoint(&build_only), "{src}");
            }
            // trivy (offline, package listing only, as a CycloneDX SBOM).
            if !require_tool("trivy") {
                continue;
            }
            // trivy reads our runtime CycloneDX: Debian and its point release,
            // exactly the closure; the build SBOM holds only the build stage.
            let o = run(Command::new("trivy")
                .args([
                    "sbom",
                    "--offline-scan",
                    "--skip-db-update",
                    "--scanners",
                    "license",
                ])
                .args(["--format", "json", "--list-all-pkgs", "-q"])
                .arg(out.join(format!("sbom/{img}.cdx.json"))));
            assert!(o.status.success(), "trivy sbom {img}: {}", text(&o));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let listed: BTreeSet<String> = v["Results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["Class"] == "os-pkgs")
                .flat_map(|r| r["Packages"].as_array().cloned().unwrap_or_default())
                .map(|p| p["Name"].as_str().unwrap().to_string())
                .collect();
            eprintln!(
                "trivy sbom {img}: OS {}, {} packages",
                v["Metadata"]["OS"],
                listed.len()
            );
            assert_eq!(v["Metadata"]["OS"]["Family"], "debian", "{img}");
            assert_eq!(listed, want, "trivy sbom {img}");
            let build_sbom = out.join(format!("sbom/{img}.build.cdx.json"));
            assert_eq!(
                build_sbom.exists(),
                !names(img, "build").is_empty(),
                "{img}"
            );
            for input in [images.join(img), images.join(format!("{img}.tar"))] {
                let o = run(Command::new("trivy")
                    .args([
                        "image",
                        "--offline-scan",
                        "--format",
                        "cyclonedx",
                        "-q",
                        "--input",
                    ])
                    .arg(&input));
                assert!(
                    o.status.success(),
                    "trivy {}: {}",
                    input.display(),
                    text(&o)
                );
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                let comps = v["components"].as_array().unwrap();
                let os: Vec<&serde_json::Value> = comps
                    .iter()
                    .filter(|c| c["type"] == "operating-system")
                    .collect();
                let found: BTreeSet<String> = comps
                    .iter()
                    .filter(|c| {
                        c["purl"]
                            .as_str()
                            .is_some_and(|p| p.starts_with("pkg:deb/"))
                    })
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect();
                eprintln!(
                    "trivy {}: {} deb packages, os {:?}",
                    input.display(),
                    found.len(),
                    os
                );
                assert_eq!(found, want, "trivy {}", input.display());
                assert!(os.len() == 1 && os[0]["name"] == "debian", "{os:?}");
            }
        }
    }
}
