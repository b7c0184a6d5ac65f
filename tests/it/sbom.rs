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
        finding_cache: None,
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

needs! { [has_fixture_debian, has_pyspdxtools, has_python_cyclonedx]
    "needs ../shared/debian, `pyspdxtools` on PATH, python3 cyclonedx-python-lib";
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
            "sbom/example_hello.build.spdx.json",
            "sbom/example_hello.build.cdx.json",
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
                r["spdxElementId"] == a
                    && r["relationshipType"] == kind
                    && r["relatedSpdxElement"] == b
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
        assert!(
            !pkgs.iter().any(|p| p["name"] == "gcc-12"),
            "build-only package in the runtime SBOM"
        );
        // The operating system: Debian and its point release from base-files.
        let release = imgforge::release::read_release(
            &opts.images[0].packages[0].deb_path,
            &opts.images[0].packages[0].version,
        )
        .unwrap();
        assert!(release.version.starts_with("12."), "{release:?}");
        let os = pkgs
            .iter()
            .find(|p| p["primaryPackagePurpose"] == "OPERATING-SYSTEM")
            .expect("an OPERATING-SYSTEM package");
        assert_eq!(os["name"], "debian");
        assert_eq!(os["versionInfo"], release.version.as_str());
        let os_id = os["SPDXID"].as_str().unwrap();
        assert!(has_rel("SPDXRef-Image", "CONTAINS", os_id));
        assert!(has_rel(os_id, "CONTAINS", &id_of("libc6")));
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
        assert!(
            !comps.iter().any(|c| c["name"] == "gcc-12"),
            "build-only package in the runtime SBOM"
        );
        let os: Vec<&Value> = comps
            .iter()
            .filter(|c| c["type"] == "operating-system")
            .collect();
        assert_eq!(os.len(), 1, "{os:?}");
        assert_eq!(os[0]["name"], "debian");
        assert_eq!(os[0]["version"], release.version.as_str());
        // purls as syft writes them: epoch ':' kept, '+' encoded, the source
        // package as `upstream` (with its version when that differs).
        let purl_of = |name: &str| {
            comps.iter().find(|c| c["name"] == name).unwrap()["purl"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            purl_of("zlib1g"),
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
        );
        assert_eq!(
            purl_of("libc6"),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12&upstream=glibc"
        );
        assert_eq!(
            purl_of("base-files"),
            "pkg:deb/debian/base-files@12.4%2Bdeb12u15?arch=amd64&distro=debian-12"
        );

        // The build SBOM: the build stage's packages, related to the image as
        // build dependencies, never contained in it.
        let bspdx = read_json(&a.path().join("sbom/example_hello.build.spdx.json"));
        let bpkgs = bspdx["packages"].as_array().unwrap();
        let brels = bspdx["relationships"].as_array().unwrap();
        let gcc = bpkgs.iter().find(|p| p["name"] == "gcc-12").unwrap()["SPDXID"].clone();
        let brel = |a: &Value, kind: &str, b: &str| {
            brels.iter().any(|r| {
                r["spdxElementId"] == *a
                    && r["relationshipType"] == kind
                    && r["relatedSpdxElement"] == b
            })
        };
        assert!(brel(&gcc, "BUILD_DEPENDENCY_OF", "SPDXRef-Image"));
        assert!(!brel(
            &Value::from("SPDXRef-Image"),
            "CONTAINS",
            gcc.as_str().unwrap()
        ));
        assert!(
            !bpkgs.iter().any(|p| p["name"] == "libc6"),
            "runtime package in the build SBOM"
        );
        let bcdx = read_json(&a.path().join("sbom/example_hello.build.cdx.json"));
        let bnames: Vec<&str> = bcdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] == "library")
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(bnames, ["gcc-12"]);
        assert_eq!(bcdx["metadata"]["lifecycles"][0]["phase"], "build");

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

        for stem in ["example_hello", "example_hello.build"] {
            validate_spdx(&a.path().join(format!("sbom/{stem}.spdx.json")));
            validate_cyclonedx(&a.path().join(format!("sbom/{stem}.cdx.json")));
        }
    }
}

needs! { [has_fixture_debian, has_trivy] "needs ../shared/debian, `trivy` on PATH";
    /// `trivy sbom` (offline, package listing only) reads the runtime
    /// CycloneDX: it detects Debian and its point release from the
    /// operating-system component and lists exactly the shipped packages, no
    /// build-only one.
    fn trivy_detects_the_os_and_the_shipped_packages_from_the_cyclonedx() {
        let Some(fx) = fixture() else { return };
        if !require_tool("trivy") {
            return;
        }
        let out = tempfile::tempdir().unwrap();
        let opts = options(&fx, out.path(), 2);
        sbom::write_all(&opts).unwrap();
        let want: std::collections::BTreeSet<String> =
            SHIPPED.iter().map(|s| s.to_string()).collect();
        let release = imgforge::release::read_release(
            &opts.images[0].packages[0].deb_path,
            &opts.images[0].packages[0].version,
        )
        .unwrap();
        for (file, names) in [
            ("example_hello.cdx.json", want.clone()),
            (
                "example_hello.build.cdx.json",
                ["gcc-12".to_string()].into(),
            ),
        ] {
            let o = run(Command::new("trivy")
                .args([
                    "sbom",
                    "--offline-scan",
                    "--skip-db-update",
                    "--skip-java-db-update",
                ])
                .args([
                    "--scanners",
                    "license",
                    "--format",
                    "json",
                    "--list-all-pkgs",
                    "-q",
                ])
                .arg(out.path().join("sbom").join(file)));
            assert!(o.status.success(), "trivy {file}: {}", text(&o));
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(
                v["Metadata"]["OS"]["Family"], "debian",
                "{file}: {}",
                v["Metadata"]
            );
            assert_eq!(v["Metadata"]["OS"]["Name"], release.version.as_str());
            let found: std::collections::BTreeSet<String> = v["Results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["Class"] == "os-pkgs")
                .flat_map(|r| r["Packages"].as_array().cloned().unwrap_or_default())
                .map(|p| p["Name"].as_str().unwrap().to_string())
                .collect();
            eprintln!(
                "trivy sbom {file}: OS {}, {} packages",
                v["Metadata"]["OS"],
                found.len()
            );
            assert_eq!(found, names, "{file}");
        }
    }
}

pub(crate) fn validate_spdx(file: &Path) {
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

pub(crate) fn validate_cyclonedx(file: &Path) {
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

/// Every file under `dir`, by relative path.
fn all_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

needs! { [has_fixture_debian] "needs ../shared/debian";
    /// Remembered license findings give the same documents, byte for byte, as
    /// findings detected afresh (first run fills the memo, second reads it).
    fn sbom_remembered_findings_give_identical_documents() {
        let Some(fx) = fixture() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let memo = tmp.path().join("memo");
        let mut outs = Vec::new();
        for (i, cache) in [None, Some(memo.clone()), Some(memo.clone())]
            .into_iter()
            .enumerate()
        {
            let out = tmp.path().join(format!("out{i}"));
            let mut o = options(&fx, &out, 2);
            o.finding_cache = cache;
            imgforge::sbom::write_all(&o).unwrap();
            outs.push(all_files(&out));
        }
        assert!(std::fs::read_dir(&memo).unwrap().count() >= SHIPPED.len());
        assert_eq!(outs[0], outs[1], "filling the memo changed the documents");
        assert_eq!(outs[0], outs[2], "reading the memo changed the documents");
    }
}
