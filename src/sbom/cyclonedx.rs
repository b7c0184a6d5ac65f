//! CycloneDX 1.6 JSON for one image.
//!
//! * `metadata.component`: the image (type `container`, manifest sha256, an
//!   `pkg:oci` purl); `metadata.tools.components`: imgforge.
//! * The operating system: an `operating-system` component named `debian`
//!   with the point release of base-files' `/etc/debian_version` (what
//!   `trivy sbom` needs to match OS-package vulnerabilities); it depends on
//!   every shipped `.deb`.
//! * Shipped `.deb`s: `library` components (purl with syft's qualifiers as
//!   `bom-ref`) with supplier, sha256 of the `.deb`, declared license
//!   expression (omitted when NOASSERTION; the `imgforge:license` property
//!   then says so), homepage, and properties for the source package, its
//!   purl, the detection method and review flags. Scope `required`.
//! * Build-stage artifacts: `file` components with sha256.
//! * The build SBOM ([`Part::Build`]) lists the build stage's packages
//!   instead (lifecycle phase `build`, property `imgforge:stage` = `build`),
//!   and no artifact: build-only packages never appear in the runtime SBOM.
//! * `dependencies`: the image on the OS and artifacts, the OS on the
//!   packages, each package on what its `Depends` names among them.
//! * `serialNumber`: a UUID derived from the hash of the document itself.

use super::{
    DocContext, Findings, Part, SbomImage, SbomOptions, SbomPackage, deb_purl, depends_on, key,
    maintainer, purl, purl_encode, rfc3339,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn prop(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn properties(p: &SbomPackage, ctx: &DocContext, findings: &Findings) -> Vec<Value> {
    let mut props = vec![
        prop("debian:source", &p.source),
        prop("debian:source_version", &p.source_version),
        prop(
            "debian:source_purl",
            &purl(&p.source, &p.source_version, "source", &ctx.distro),
        ),
        prop("debian:filename", &p.filename),
        prop("debian:size", &p.size.to_string()),
    ];
    if let Some(s) = p.control.get("Section") {
        props.push(prop("debian:section", s));
    }
    if ctx.part == Part::Build {
        props.push(prop("imgforge:stage", "build"));
    }
    if let Some(f) = findings.get(&key(p)) {
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
    props
}

fn component(p: &SbomPackage, ctx: &DocContext, findings: &Findings) -> Value {
    let pu = deb_purl(p, &ctx.distro);
    let mut c = json!({
        "type": "library",
        "bom-ref": pu,
        "name": p.name,
        "version": p.version,
        "purl": pu,
        "scope": "required",
        "hashes": [{"alg": "SHA-256", "content": p.sha256}],
        "properties": properties(p, ctx, findings),
    });
    if let Some(e) = findings.get(&key(p)).and_then(|f| f.expression.clone()) {
        c["licenses"] = licenses(&e);
        let (_, converted) = super::listed::expression(&e);
        if let Some(props) = c["properties"].as_array_mut() {
            for (r, conv) in &converted {
                let v = format!(
                    "{r} = SPDX {} (license list {})",
                    conv.term,
                    super::listed::list_version()
                );
                props.push(prop("imgforge:license_ref", &v));
            }
            props.sort_by_key(crate::json::to_canonical);
        }
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

/// The `licenses` of a component: one SPDX expression, its ids as
/// validators know them; a single license validators do not know yet is
/// a named license with its text instead (an expression cannot carry
/// text; in a compound one such a term is a `LicenseRef-`, explained by an
/// `imgforge:license_ref` property).
fn licenses(expr: &str) -> Value {
    let (written, converted) = super::listed::expression(expr);
    if let (1, Some(c)) = (converted.len(), converted.get(&written)) {
        return json!([{"license": {
            "name": c.term,
            "acknowledgement": "declared",
            "text": {"contentType": "text/plain", "content": c.text},
        }}]);
    }
    json!([{"expression": written, "acknowledgement": "declared"}])
}

/// The operating-system component and its `bom-ref`, when the release is known.
fn os_component(ctx: &DocContext) -> Option<(Value, String)> {
    let r = ctx.release.as_ref()?;
    let bom_ref = format!("os:debian@{}", r.version);
    let c = json!({
        "type": "operating-system",
        "bom-ref": bom_ref,
        "name": "debian",
        "version": r.version,
        "description": format!("Debian GNU/Linux {} (/etc/debian_version of base-files {})", r.version, r.base_files),
        "properties": [prop("debian:base_files", &r.base_files), prop("imgforge:distro", &ctx.distro)],
    });
    Some((c, bom_ref))
}

/// The `pkg:oci` purl of the image.
fn image_ref(img: &SbomImage) -> String {
    let short = img
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&img.name)
        .to_ascii_lowercase();
    format!(
        "pkg:oci/{}@{}?tag={}",
        purl_encode(&short),
        purl_encode(&img.manifest_digest),
        purl_encode(&img.tag)
    )
}

/// Package components and their dependency entries; the refs of the packages.
fn packages(
    pkgs: &[SbomPackage],
    ctx: &DocContext,
    findings: &Findings,
) -> (Vec<Value>, Vec<Value>, BTreeSet<String>) {
    let mut components = Vec::new();
    let mut deps = Vec::new();
    let mut refs = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let present: BTreeSet<String> = pkgs.iter().map(|p| p.name.clone()).collect();
    for p in pkgs {
        if !seen.insert(key(p)) {
            continue;
        }
        let r = deb_purl(p, &ctx.distro);
        refs.insert(r.clone());
        let on: BTreeSet<String> = depends_on(p, &present)
            .iter()
            .filter_map(|d| pkgs.iter().find(|q| &q.name == d))
            .map(|q| deb_purl(q, &ctx.distro))
            .collect();
        deps.push(json!({"ref": r, "dependsOn": on.into_iter().collect::<Vec<_>>()}));
        components.push(component(p, ctx, findings));
    }
    (components, deps, refs)
}

/// The CycloneDX document of one image (its runtime or its build SBOM).
pub fn document(
    img: &SbomImage,
    opts: &SbomOptions,
    findings: &Findings,
    ctx: &DocContext,
) -> Value {
    let image_ref = image_ref(img);
    let (mut components, mut deps, pkg_refs) = packages(ctx.packages(img), ctx, findings);
    let mut image_deps = BTreeSet::new();
    match os_component(ctx) {
        Some((os, os_ref)) => {
            components.push(os);
            deps.push(
                json!({"ref": os_ref, "dependsOn": pkg_refs.into_iter().collect::<Vec<_>>()}),
            );
            image_deps.insert(os_ref);
        }
        None => image_deps.extend(pkg_refs),
    }
    if ctx.part == Part::Runtime {
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
    }
    deps.push(json!({"ref": image_ref, "dependsOn": image_deps.into_iter().collect::<Vec<_>>()}));
    components.sort_by_key(|c| crate::json::to_canonical(&c["bom-ref"]));
    deps.sort_by_key(|d| crate::json::to_canonical(&d["ref"]));
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": metadata(img, opts, ctx, &image_ref),
        "components": components,
        "dependencies": deps,
    });
    let h = crate::json::to_canonical(&doc);
    doc["serialNumber"] = json!(format!("urn:uuid:{}", super::uuid_from(&h)));
    doc
}

fn metadata(img: &SbomImage, opts: &SbomOptions, ctx: &DocContext, image_ref: &str) -> Value {
    let digest_hex = img.manifest_digest.trim_start_matches("sha256:");
    let (phase, scope) = match ctx.part {
        Part::Runtime => ("post-build", "runtime"),
        Part::Build => ("build", "build-stage"),
    };
    json!({
        "timestamp": rfc3339(opts.source_date_epoch),
        "lifecycles": [{"phase": phase}],
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
        "properties": [prop("imgforge:distro", &ctx.distro), prop("imgforge:sbom", scope)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses_validators_do_not_know_are_named_with_their_text() {
        let one = licenses("BSD-3-Clause-Tso");
        assert_eq!(one[0]["license"]["name"], "BSD-3-Clause-Tso");
        assert!(one[0]["license"].get("id").is_none());
        let text = one[0]["license"]["text"]["content"].as_str().unwrap();
        assert!(text.contains("Redistribution"));
        let both = licenses("BSD-3-Clause-Tso OR MIT");
        assert_eq!(both[0]["expression"], "LicenseRef-BSD-3-Clause-Tso OR MIT");
        assert_eq!(licenses("MIT")[0]["expression"], "MIT");
    }
}
