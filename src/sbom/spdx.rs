//! SPDX 2.3 JSON for one image.
//!
//! * `SPDXRef-Image` (primaryPackagePurpose CONTAINER, manifest sha256) is
//!   what the document DESCRIBES.
//! * The operating system: a package `debian` with the point release of
//!   base-files' `/etc/debian_version` (primaryPackagePurpose
//!   OPERATING-SYSTEM); the image CONTAINS it and it CONTAINS every `.deb`.
//! * Shipped `.deb`s: packages with purl, supplier (Maintainer), sha256 of the
//!   `.deb`, homepage, source package (sourceInfo plus an OTHER external ref
//!   with the `arch=source` purl), `licenseDeclared` from detection,
//!   `licenseConcluded` NOASSERTION. Image CONTAINS each; DEPENDS_ON follows
//!   `Depends`/`Pre-Depends` among shipped packages.
//! * Build-stage artifacts: packages with primaryPackagePurpose FILE and their
//!   sha256 (SPDX files would require a SHA1 the build does not compute);
//!   the image CONTAINS them.
//! * The build SBOM ([`Part::Build`]) DESCRIBES `SPDXRef-BuildStage`
//!   instead, which CONTAINS the build stage's packages, each
//!   BUILD_DEPENDENCY_OF the image; the runtime SBOM never lists them.
//! * Every `LicenseRef-` used is defined in `hasExtractedLicensingInfos`.
//! * `documentNamespace` is derived from a hash of the document itself.

use super::license::{self, LicenseFinding};
use super::listed::{self, Converted};
use super::{
    DocContext, Findings, Part, SbomImage, SbomOptions, SbomPackage, deb_purl, depends_on, key,
    maintainer, purl, purl_encode, rfc3339,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// An SPDXID-safe identifier from free text plus a short hash for uniqueness.
fn spdx_id(prefix: &str, parts: &[&str]) -> String {
    let text = listed::id_safe(parts.first().copied().unwrap_or(""));
    let h = crate::digest::sha256_hex(parts.join("\u{0}").as_bytes());
    format!("SPDXRef-{prefix}-{text}-{}", &h[..12])
}

fn pkg_id(p: &SbomPackage) -> String {
    spdx_id("Package-deb", &[&p.name, &p.version, &p.architecture])
}

fn deb_package(p: &SbomPackage, ctx: &DocContext, f: Option<&LicenseFinding>) -> Value {
    let build = ctx.part == Part::Build;
    let mut v = json!({
        "SPDXID": pkg_id(p),
        "name": p.name,
        "versionInfo": p.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "packageFileName": p.filename.rsplit('/').next().unwrap_or(&p.filename),
        "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256}],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": f.and_then(|f| f.expression.as_deref()).map_or_else(|| "NOASSERTION".into(), |e| listed::expression(e).0),
        "copyrightText": "NOASSERTION",
        "sourceInfo": format!("built from Debian source package {} {}", p.source, p.source_version),
        "externalRefs": [
            {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
             "referenceLocator": deb_purl(p, &ctx.distro)},
            {"referenceCategory": "OTHER", "referenceType": "debian-source-purl",
             "referenceLocator": purl(&p.source, &p.source_version, "source", &ctx.distro)},
        ],
    });
    if let Some((name, email)) = maintainer(p) {
        let s = match email {
            Some(e) => format!("Organization: {name} ({e})"),
            None => format!("Organization: {name}"),
        };
        v["supplier"] = json!(s);
    }
    if let Some(h) = p
        .control
        .get("Homepage")
        .map(str::trim)
        .filter(|h| h.starts_with("http"))
    {
        v["homepage"] = json!(h);
    }
    if let Some(d) = p.control.get("Description").and_then(|d| d.lines().next()) {
        v["summary"] = json!(d.trim());
    }
    let mut comment = Vec::new();
    if build {
        comment.push(
            "build-stage package: used to build artifacts, NOT shipped in the image".to_string(),
        );
    }
    if let Some(f) = f {
        comment.push(format!("license detection: {}", f.method.label()));
        if let Some((pkg, link)) = &f.followed_symlink {
            comment.push(format!("copyright file from package {pkg} via {link}"));
        }
        if !f.flags.is_empty() {
            comment.push(format!(
                "review flags: {}",
                f.flags
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !comment.is_empty() {
        v["comment"] = json!(comment.join("; "));
    }
    v
}

fn rel(a: &str, kind: &str, b: &str) -> Value {
    json!({"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b})
}

fn sort_by_str(v: &mut [Value], field: &str) {
    v.sort_by(|a, b| {
        let ka = crate::json::to_canonical(&a[field]);
        let kb = crate::json::to_canonical(&b[field]);
        ka.cmp(&kb)
            .then_with(|| crate::json::to_canonical(a).cmp(&crate::json::to_canonical(b)))
    });
}

fn image_package(img: &SbomImage) -> Value {
    let digest_hex = img.manifest_digest.trim_start_matches("sha256:");
    let short = img
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&img.name)
        .to_ascii_lowercase();
    json!({
        "SPDXID": IMAGE_ID,
        "name": img.name,
        "versionInfo": img.tag,
        "primaryPackagePurpose": "CONTAINER",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{"algorithm": "SHA256", "checksumValue": digest_hex}],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": format!("OCI image; manifest {}, config {}", img.manifest_digest, img.config_digest),
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{}@{}?tag={}", purl_encode(&short), purl_encode(&img.manifest_digest), purl_encode(&img.tag))}],
    })
}

const IMAGE_ID: &str = "SPDXRef-Image";
const BUILD_ID: &str = "SPDXRef-BuildStage";

/// The operating-system package and its SPDXID, when the release is known.
fn os_package(ctx: &DocContext) -> Option<(Value, String)> {
    let r = ctx.release.as_ref()?;
    let id = spdx_id("OperatingSystem-debian", &[&r.version, &r.base_files]);
    let v = json!({
        "SPDXID": id,
        "name": "debian",
        "versionInfo": r.version,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "supplier": "Organization: Debian",
        "comment": format!("Debian GNU/Linux {} (/etc/debian_version of base-files {})", r.version, r.base_files),
    });
    Some((v, id))
}

/// The `LicenseRef-`s of a document: the packages using each, and the
/// text of those that stand for an SPDX id validators do not know yet.
#[derive(Debug, Default)]
struct Refs {
    used: BTreeMap<String, BTreeSet<String>>,
    converted: BTreeMap<String, Converted>,
}

/// LicenseRef- identifiers used by `expr` (as written), recorded for `pkg`.
fn collect_refs(expr: Option<&str>, pkg: &str, refs: &mut Refs) {
    let Some(e) = expr else { return };
    let (written, converted) = listed::expression(e);
    refs.converted.extend(converted);
    for t in license::expression_terms(&written) {
        if let Some(r) = t.split(' ').find(|w| w.starts_with("LicenseRef-")) {
            refs.used
                .entry(r.to_string())
                .or_default()
                .insert(pkg.to_string());
        }
    }
}

/// The `.deb` packages of the document and their relationships.
fn deb_packages(
    img: &SbomImage,
    ctx: &DocContext,
    findings: &Findings,
    parents: &[String],
    packages: &mut Vec<Value>,
    rels: &mut Vec<Value>,
    refs: &mut Refs,
) {
    let pkgs = ctx.packages(img);
    let mut seen = BTreeSet::new();
    let present: BTreeSet<String> = pkgs.iter().map(|p| p.name.clone()).collect();
    for p in pkgs {
        if !seen.insert(key(p)) {
            continue;
        }
        let f = findings.get(&key(p));
        packages.push(deb_package(p, ctx, f));
        for parent in parents {
            rels.push(rel(parent, "CONTAINS", &pkg_id(p)));
        }
        if ctx.part == Part::Build {
            rels.push(rel(&pkg_id(p), "BUILD_DEPENDENCY_OF", IMAGE_ID));
        }
        for d in depends_on(p, &present) {
            if let Some(dp) = pkgs.iter().find(|q| q.name == d) {
                rels.push(rel(&pkg_id(p), "DEPENDS_ON", &pkg_id(dp)));
            }
        }
        collect_refs(f.and_then(|f| f.expression.as_deref()), &p.name, refs);
    }
}

fn artifact_packages(img: &SbomImage, packages: &mut Vec<Value>, rels: &mut Vec<Value>) {
    let mut art_seen = BTreeSet::new();
    for a in &img.artifacts {
        if !art_seen.insert(a.path.clone()) {
            continue;
        }
        let id = spdx_id("Artifact", &[&a.path, &a.sha256]);
        packages.push(json!({
            "SPDXID": id,
            "name": a.path,
            "primaryPackagePurpose": "FILE",
            "packageFileName": format!("/{}", a.path),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": a.sha256}],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "comment": format!("build-stage artifact, {} bytes, copied into the image", a.size),
        }));
        rels.push(rel(IMAGE_ID, "CONTAINS", &id));
    }
}

fn extracted_infos(refs: &Refs) -> Vec<Value> {
    refs.used
        .iter()
        .map(|(r, pkgs)| {
            let name = r.trim_start_matches("LicenseRef-");
            let used_by = format!("used by: {}", pkgs.iter().cloned().collect::<Vec<_>>().join(", "));
            if let Some(c) = refs.converted.get(r) {
                return json!({
                    "licenseId": r,
                    "name": c.term,
                    "extractedText": c.text,
                    "comment": format!(
                        "the SPDX license {:?} of license list {}, written as a LicenseRef because SBOM validators do not know it yet; {used_by}",
                        c.term,
                        listed::list_version()
                    ),
                });
            }
            let text = if r == "LicenseRef-public-domain" {
                "The Debian copyright file declares these files to be in the public domain; there is no license grant. See legal/attribution/<package>/copyright.".to_string()
            } else {
                format!(
                    "License named {name:?} in the Debian copyright file, with no SPDX identifier; the text is in legal/attribution/<package>/copyright."
                )
            };
            json!({
                "licenseId": r,
                "name": name,
                "extractedText": text,
                "comment": used_by,
            })
        })
        .collect()
}

/// The SPDX document of one image (its runtime or its build SBOM).
pub fn document(
    img: &SbomImage,
    opts: &SbomOptions,
    findings: &Findings,
    ctx: &DocContext,
) -> Value {
    let mut packages = vec![image_package(img)];
    let root = match ctx.part {
        Part::Runtime => IMAGE_ID,
        Part::Build => {
            packages.push(json!({
                "SPDXID": BUILD_ID,
                "name": format!("{}:{} build stage", img.name, img.tag),
                "primaryPackagePurpose": "OTHER",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "comment": "the build stage's root file system: used to build artifacts, NOT shipped in the image",
            }));
            BUILD_ID
        }
    };
    let mut rels = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", root)];
    let mut parents = vec![root.to_string()];
    if let Some((os, id)) = os_package(ctx) {
        packages.push(os);
        rels.push(rel(root, "CONTAINS", &id));
        parents.push(id);
    }
    let mut refs = Refs::default();
    deb_packages(
        img,
        ctx,
        findings,
        &parents,
        &mut packages,
        &mut rels,
        &mut refs,
    );
    if ctx.part == Part::Runtime {
        artifact_packages(img, &mut packages, &mut rels);
    } else {
        rels.push(rel(BUILD_ID, "BUILD_TOOL_OF", IMAGE_ID));
    }
    let extracted = extracted_infos(&refs);
    sort_by_str(&mut packages, "SPDXID");
    rels.sort_by_key(crate::json::to_canonical);
    rels.dedup();
    let name = match ctx.part {
        Part::Runtime => format!("{}:{}", img.name, img.tag),
        Part::Build => format!("{}:{} build stage", img.name, img.tag),
    };
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": "",
        "creationInfo": {
            "created": rfc3339(opts.source_date_epoch),
            "creators": [format!("Tool: imgforge-{}", opts.tool_version)],
            "licenseListVersion": listed::list_version(),
        },
        "packages": packages,
        "relationships": rels,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(extracted);
    }
    let h = crate::digest::sha256_hex(&crate::json::to_canonical(&doc));
    doc["documentNamespace"] = json!(format!(
        "https://imgforge.invalid/spdx/{}-{}",
        super::safe_name(&img.name),
        h
    ));
    doc
}
