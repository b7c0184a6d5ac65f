//! SBOM generation on a small image made of fixture packages: validated with
//! the SPDX and CycloneDX reference tools, checked for content, and written
//! twice to prove byte-identical output.

use crate::common::*;
use imgforge::sbom::{self, SbomFile, SbomImage, SbomOptions, SbomPackage};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pool(fixture: &Path) -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(fixture.join("pool")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if let Some(pkg) = name.strip_suffix(".deb").and_then(|n| n.split('_').next()) {
            m.insert(pkg.to_string(), p);
        }
    }
    m
}

fn package(avail: &BTreeMap<String, PathBuf>, name: &str) -> SbomPackage {
    let deb = avail[name].clone();
    let control = imgforge::deb::read_control(&deb, &imgforge::deb::Limits::default()).unwrap();
    let version = control.get("Version").unwrap().to_string();
    let (source, source_version) = match control.get("Source") {
        Some(s) => {
            let mut it = s.split_whitespace();
            let n = it.next().unwrap().to_string();
            let v = it
                .next()
                .map(|v| v.trim_matches(['(', ')']).to_string())
                .unwrap_or_else(|| version.clone());
            (n, v)
        }
        None => (name.to_string(), version.clone()),
    };
    let (sha256, size) = imgforge::digest::sha256_file(&deb).unwrap();
    SbomPackage {
        name: name.to_string(),
        version,
        architecture: control.get("Architecture").unwrap().to_string(),
        source,
        source_version,
        sha256,
        size,
        filename: format!("pool/{}", deb.file_name().unwrap().to_string_lossy()),
        deb_path: deb,
        control,
    }
}

const SHIPPED: &[&str] = &["base-files", "libc6", "zlib1g", "libgcc-s1", "gcc-12-base"];

fn options(fx: &Path, out: &Path, jobs: usize) -> SbomOptions {
    let avail = pool(fx);
    let packages = SHIPPED.iter().map(|n| package(&avail, n)).collect();
    SbomOptions {
        out_dir: out.to_path_buf(),
        source_date_epoch: 1_700_000_000,
        distro: "debian-12".into(),
        tool_version: "0.1.0".into(),
        images: vec![SbomImage {
            name: "example/hello".into(),
            tag: "1.0".into(),
            manifest_digest: format!("sha256:{}", "ab".repeat(32)),
            config_digest: format!("sha256:{}", "cd".repeat(32)),
            packages,
            build_packages: vec![package(&avail, "gcc-12")],
            artifacts: vec![SbomFile {
                path: "usr/local/bin/hello".into(),
                sha256: imgforge::digest::sha256_hex(b"hello\n"),
                size: 6,
            }],
        }],
        available: avail,
        jobs,
        limits: Default::default(),
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn snapshot(dir: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    files
        .iter()
        .map(|f| (f.clone(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

#[test]
#[cfg_attr(
    not(all(has_fixture_debian, has_pyspdxtools, has_python_cyclonedx)),
    ignore = "needs ../shared/debian, `pyspdxtools` on PATH, python3 cyclonedx-python-lib"
)]
fn sbom_documents_are_valid_complete_and_reproducible() {
    let Some(fx) = fixture() else { return };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = sbom::write_all(&options(&fx, a.path(), 2)).unwrap();

    let sb = sbom::write_all(&options(&fx, b.path(), 1)).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(sa.packages, SHIPPED.len());
    assert_eq!(
        snapshot(a.path(), &sa.files),
        snapshot(b.path(), &sb.files),
        "two runs differ"
    );
    for f in [
        "sbom/example_hello.spdx.json",
        "sbom/example_hello.cdx.json",
        "legal/example_hello.md",
        "legal/example_hello.html",
        "legal/example_hello.csv",
        "legal/all.md",
        "legal/all.html",
        "legal/all.csv",
        "legal/source-offer.md",
        "legal/attribution/libc6/copyright",
        "legal/attribution/libgcc-s1/copyright",
    ] {
        assert!(
            sa.files.contains(&PathBuf::from(f)),
            "{f} missing from {:?}",
            sa.files
        );
    }
    let mut sorted = sa.files.clone();
    sorted.sort();
    assert_eq!(sorted, sa.files);
    assert!(
        sa.files
            .iter()
            .any(|f| f.starts_with("legal/attribution/common-licenses"))
    );

    // SPDX content.
    let spdx = read_json(&a.path().join("sbom/example_hello.spdx.json"));
    assert_eq!(spdx["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let pkgs = spdx["packages"].as_array().unwrap();
    let rels = spdx["relationships"].as_array().unwrap();
    let id_of = |name: &str| {
        pkgs.iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in SPDX"))["SPDXID"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let has_rel = |a: &str, kind: &str, b: &str| {
        rels.iter().any(|r| {
            r["spdxElementId"] == a && r["relationshipType"] == kind && r["relatedSpdxElement"] == b
        })
    };
    assert!(has_rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
    let opts = options(&fx, a.path(), 1);
    for p in &opts.images[0].packages {
        let sp = pkgs.iter().find(|x| x["name"] == p.name.as_str()).unwrap();
        let info = sp["sourceInfo"].as_str().unwrap();
        assert!(
            info.contains(&p.source) && info.contains(&p.source_version),
            "{info}"
        );
        assert!(
            has_rel("SPDXRef-Image", "CONTAINS", &id_of(&p.name)),
            "{} not contained",
            p.name
        );
        assert_ne!(sp["licenseDeclared"], "NOASSERTION", "{}", p.name);
        assert_eq!(sp["licenseConcluded"], "NOASSERTION");
    }
    let gcc = id_of("gcc-12");
    assert!(
        !has_rel("SPDXRef-Image", "CONTAINS", &gcc),
        "build package shipped"
    );
    assert!(has_rel(&gcc, "BUILD_DEPENDENCY_OF", "SPDXRef-Image"));
    assert!(has_rel(&id_of("libc6"), "DEPENDS_ON", &id_of("libgcc-s1")));
    let artifact = id_of("usr/local/bin/hello");
    assert!(has_rel("SPDXRef-Image", "CONTAINS", &artifact));

    // CycloneDX content.
    let cdx = read_json(&a.path().join("sbom/example_hello.cdx.json"));
    assert_eq!(cdx["metadata"]["component"]["type"], "container");
    assert_eq!(
        cdx["metadata"]["component"]["hashes"][0]["content"],
        "ab".repeat(32)
    );
    let comps = cdx["components"].as_array().unwrap();
    for p in &opts.images[0].packages {
        let c = comps.iter().find(|c| c["name"] == p.name.as_str()).unwrap();
        assert_eq!(c["scope"], "required");
        let props = c["properties"].as_array().unwrap();
        let prop = |n: &str| {
            props
                .iter()
                .find(|x| x["name"] == n)
                .map(|x| x["value"].clone())
        };
        assert_eq!(prop("debian:source"), Some(Value::from(p.source.clone())));
        assert_eq!(
            prop("debian:source_version"),
            Some(Value::from(p.source_version.clone()))
        );
    }
    let g = comps.iter().find(|c| c["name"] == "gcc-12").unwrap();
    assert_eq!(g["scope"], "excluded", "build package must not be shipped");
    let zlib = comps.iter().find(|c| c["name"] == "zlib1g").unwrap();
    assert_eq!(
        zlib["purl"],
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );

    // Reports.
    let csv = std::fs::read_to_string(a.path().join("legal/all.csv")).unwrap();
    assert!(csv.contains("libgcc-s1,12.2.0-14+deb12u1,amd64,gcc-12,12.2.0-14+deb12u1,GPL-3.0-or-later WITH GCC-exception-3.1,medium,true"), "{csv}");
    assert!(
        !csv.contains("\ngcc-12,"),
        "build package listed as shipped"
    );
    let offer = std::fs::read_to_string(a.path().join("legal/source-offer.md")).unwrap();
    assert!(offer.contains("| glibc | 2.36-9+deb12u14 |"), "{offer}");
    assert!(!offer.contains("| zlib |"));

    validate_spdx(&a.path().join("sbom/example_hello.spdx.json"));
    validate_cyclonedx(&a.path().join("sbom/example_hello.cdx.json"));
}

fn validate_spdx(file: &Path) {
    if !require_tool("pyspdxtools") {
        return;
    }
    let o = run(Command::new("pyspdxtools").arg("-i").arg(file));
    let t = text(&o);
    eprintln!("pyspdxtools {}: {t}", file.display());
    assert!(
        o.status.success() && !t.to_lowercase().contains("invalid"),
        "pyspdxtools: {t}"
    );
}

fn validate_cyclonedx(file: &Path) {
    let probe = run(Command::new("python3").args(["-c", "import cyclonedx"]));
    if !probe.status.success() {
        let msg = "this test needs the Python package cyclonedx-python-lib (pip install cyclonedx-python-lib)";
        crate::common::missing(msg);
    }
    let script = "import sys\n\
from cyclonedx.validation.json import JsonStrictValidator\n\
from cyclonedx.schema import SchemaVersion\n\
err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
if err is not None:\n    print('INVALID', err); sys.exit(1)\n\
print('valid')\n";
    let o = run(Command::new("python3").args(["-c", script]).arg(file));
    eprintln!("cyclonedx {}: {}", file.display(), text(&o));
    assert!(o.status.success(), "CycloneDX validation: {}", text(&o));
}
