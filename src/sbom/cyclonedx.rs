//! CycloneDX 1.6 JSON for one image.
//!
//! * `metadata.component`: the image (type `container`, manifest sha256, an
//!   `pkg:oci` purl); `metadata.tools.components`: imgforge.
//! * Shipped `.deb`s: `library` components (purl as `bom-ref`) with supplier,
//!   sha256 of the `.deb`, declared license expression (omitted when
//!   NOASSERTION; the `imgforge:license` property then says so), homepage,
//!   and properties for the source package, its purl, the detection method and
//!   review flags. Scope `required`.
//! * Build-stage artifacts: `file` components with sha256.
//! * Build-stage packages: components with scope `excluded` and property
//!   `imgforge:stage` = `build` — recorded, but not part of what ships.
//! * `dependencies`: the image on its shipped packages and artifacts; each
//!   package on what its `Depends` names among shipped packages.
//! * `serialNumber`: a UUID derived from the hash of the document itself.

use super::{
    Findings, SbomImage, SbomOptions, SbomPackage, depends_on, key, maintainer, purl, purl_encode,
    rfc3339,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn prop(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn component(p: &SbomPackage, opts: &SbomOptions, findings: &Findings, build: bool) -> Value {
    let f = findings.get(&key(p));
    let pu = purl(&p.name, &p.version, &p.architecture, &opts.distro);
    let mut props = vec![
        prop("debian:source", &p.source),
        prop("debian:source_version", &p.source_version),
        prop(
            "debian:source_purl",
            &purl(&p.source, &p.source_version, "source", &opts.distro),
        ),
        prop("debian:filename", &p.filename),
        prop("debian:size", &p.size.to_string()),
    ];
    if let Some(s) = p.control.get("Section") {
        props.push(prop("debian:section", s));
    }
    if build {
        props.push(prop("imgforge:stage", "build"));
    }
    if let Some(f) = f {
        props.push(prop("imgforge:license_method", f.method.label()));
        if f.expression.is_none() {
            props.push(prop("imgforge:license", "NOASSERTION"));
        }
        for fl in &f.flags {
            props.push(prop("imgforge:review_flag", &fl.to_string()));
        }
        if let Some((pkg, link)) = &f.followed_symlink {
            props.push(prop("imgforge:copyright_from", &format!("{pkg} ({link})")));
        }
    }
    props.sort_by_key(crate::json::to_canonical);
    let mut c = json!({
        "type": "library",
        "bom-ref": pu,
        "name": p.name,
        "version": p.version,
        "purl": pu,
        "scope": if build { "excluded" } else { "required" },
        "hashes": [{"alg": "SHA-256", "content": p.sha256}],
        "properties": props,
    });
    if let Some(e) = f.and_then(|f| f.expression.clone()) {
        c["licenses"] = json!([{"expression": e, "acknowledgement": "declared"}]);
    }
    if let Some((name, email)) = maintainer(p) {
        let mut s = json!({"name": name});
        if let Some(e) = email {
            s["contact"] = json!([{"name": name, "email": e}]);
        }
        c["supplier"] = s;
    }
    if let Some(h) = p
        .control
        .get("Homepage")
        .map(str::trim)
        .filter(|h| h.starts_with("http"))
    {
        c["externalReferences"] = json!([{"type": "website", "url": h}]);
    }
    if let Some(d) = p.control.get("Description").and_then(|d| d.lines().next()) {
        c["description"] = json!(d.trim());
    }
    c
}

/// The CycloneDX document of one image.
pub fn document(img: &SbomImage, opts: &SbomOptions, findings: &Findings) -> Value {
    let digest_hex = img.manifest_digest.trim_start_matches("sha256:");
    let short = img
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&img.name)
        .to_ascii_lowercase();
    let image_ref = format!(
        "pkg:oci/{}@{}?tag={}",
        purl_encode(&short),
        purl_encode(&img.manifest_digest),
        purl_encode(&img.tag)
    );
    let mut components = Vec::new();
    let mut deps = Vec::new();
    let mut image_deps = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let present: BTreeSet<String> = img.packages.iter().map(|p| p.name.clone()).collect();
    for p in &img.packages {
        if !seen.insert(key(p)) {
            continue;
        }
        let c = component(p, opts, findings, false);
        let r = purl(&p.name, &p.version, &p.architecture, &opts.distro);
        image_deps.insert(r.clone());
        let on: Vec<String> = depends_on(p, &present)
            .iter()
            .filter_map(|d| img.packages.iter().find(|q| &q.name == d))
            .map(|q| purl(&q.name, &q.version, &q.architecture, &opts.distro))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        deps.push(json!({"ref": r, "dependsOn": on}));
        components.push(c);
    }
    for p in &img.build_packages {
        if !seen.insert(key(p)) {
            continue;
        }
        components.push(component(p, opts, findings, true));
    }
    let mut art_seen = BTreeSet::new();
    for a in &img.artifacts {
        if !art_seen.insert(a.path.clone()) {
            continue;
        }
        let r = format!("file:/{}", a.path);
        image_deps.insert(r.clone());
        components.push(json!({
            "type": "file",
            "bom-ref": r,
            "name": format!("/{}", a.path),
            "scope": "required",
            "hashes": [{"alg": "SHA-256", "content": a.sha256}],
            "properties": [prop("imgforge:artifact_size", &a.size.to_string()), prop("imgforge:stage", "build-artifact")],
        }));
        deps.push(json!({"ref": r, "dependsOn": []}));
    }
    deps.push(json!({"ref": image_ref, "dependsOn": image_deps.into_iter().collect::<Vec<_>>()}));
    components.sort_by_key(|c| crate::json::to_canonical(&c["bom-ref"]));
    deps.sort_by_key(|d| crate::json::to_canonical(&d["ref"]));
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(opts.source_date_epoch),
            "tools": {"components": [{"type": "application", "name": "imgforge", "version": opts.tool_version}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": img.name,
                "version": img.tag,
                "purl": image_ref,
                "hashes": [{"alg": "SHA-256", "content": digest_hex}],
                "properties": [prop("oci:manifest_digest", &img.manifest_digest), prop("oci:config_digest", &img.config_digest)],
            },
            "properties": [prop("imgforge:distro", &opts.distro)],
        },
        "components": components,
        "dependencies": deps,
    });
    let h = crate::json::to_canonical(&doc);
    doc["serialNumber"] = json!(format!("urn:uuid:{}", super::uuid_from(&h)));
    doc
}
