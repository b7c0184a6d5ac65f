//! The upgrade report a bundle carries for the site's operator
//! (`report/upgrade.{md,html,json}`): per image, the packages that moved
//! (old → new, with the CVE ids the new package's changelog names since
//! the old version, read as `imgforge update` reads them), came or went,
//! the licenses added and removed, the layers and bytes this bundle brings
//! new, and the run command (entrypoint, cmd) when it changed.
//!
//! What the previous release held comes from `--since`: a previous bundle
//! (its `legal/all.licenses.json` and image configs), or a build record
//! with its output directory around it. Its manifest alone, or a site
//! inventory, says which layers the site holds but not which packages:
//! the report lists the new versions then, and says so. Deterministic:
//! sorted, no clock.

use super::{BundleError, Image, Manifest, io_err};
use crate::archive::changelog;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

/// The report format version.
pub const VERSION: u32 = 1;
/// Its entries in the bundle.
pub const MARKDOWN: &str = "report/upgrade.md";
pub const HTML: &str = "report/upgrade.html";
pub const JSON: &str = "report/upgrade.json";

/// A package: version and license, by name.
type Packages = BTreeMap<String, (String, String)>;

/// What one release holds, as far as is known.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Image reference → manifest digest.
    pub images: BTreeMap<String, String>,
    /// Image reference → packages; `None` when unknown.
    pub packages: Option<BTreeMap<String, Packages>>,
    /// Image reference → `{"entrypoint": .., "cmd": ..}`.
    pub run: BTreeMap<String, Value>,
}

/// The run command of an image config.
fn run_of(config: &Value) -> Value {
    json!({
        "entrypoint": config["config"]["Entrypoint"],
        "cmd": config["config"]["Cmd"],
    })
}

/// Packages per image from `legal/all.licenses.json` bytes.
fn packages_of(annex: &[u8]) -> Option<BTreeMap<String, Packages>> {
    let v: Value = serde_json::from_slice(annex).ok()?;
    let mut out: BTreeMap<String, Packages> = BTreeMap::new();
    for p in v["packages"].as_array()? {
        let (Some(name), Some(version)) = (p["package"].as_str(), p["version"].as_str()) else {
            continue;
        };
        let license = p["license"].as_str().unwrap_or("NOASSERTION");
        for i in p["images"].as_array().into_iter().flatten() {
            if let Some(i) = i.as_str() {
                out.entry(i.to_string())
                    .or_default()
                    .insert(name.to_string(), (version.to_string(), license.to_string()));
            }
        }
    }
    Some(out)
}

const ANNEX: &str = "legal/all.licenses.json";
const MAX_DOC: u64 = 16 << 20;

/// The facts of a build output directory (its images as listed).
pub fn facts_of_output(out: &Path, images: &[Image]) -> Result<Facts, BundleError> {
    let read = |p: &Path| -> Result<Option<Vec<u8>>, BundleError> {
        match std::fs::File::open(p) {
            Ok(f) => {
                let mut b = Vec::new();
                f.take(MAX_DOC).read_to_end(&mut b).map_err(io_err(p))?;
                Ok(Some(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(p)(e)),
        }
    };
    let mut f = Facts {
        packages: read(&out.join(ANNEX))?.and_then(|b| packages_of(&b)),
        ..Facts::default()
    };
    for i in images {
        f.images.insert(i.reference.clone(), i.manifest.clone());
        if let Some(b) = read(&out.join(super::blob_path(&i.config)))? {
            let c: Value = serde_json::from_slice(&b).unwrap_or_default();
            f.run.insert(i.reference.clone(), run_of(&c));
        }
    }
    Ok(f)
}

/// The facts of what `--since` names: a bundle (read through once), a
/// build record (its output directory beside it), or nothing known.
pub fn facts_of_previous(prev: &Path) -> Result<Facts, BundleError> {
    if super::inventory::read(prev)?.is_some() {
        return Ok(Facts::default());
    }
    let mut first = [0u8; 1];
    let n = std::fs::File::open(prev)
        .and_then(|mut f| f.read(&mut first))
        .map_err(io_err(prev))?;
    let json = n == 1 && first[0] == b'{';
    let (m, _) = super::read_previous(prev)?;
    if json && m.release.starts_with("build record ") {
        // Its output directory holds the reports and configs.
        let dir = prev.parent().unwrap_or(Path::new("."));
        return facts_of_output(dir, &m.images);
    }
    let mut f = Facts::default();
    for i in &m.images {
        f.images.insert(i.reference.clone(), i.manifest.clone());
    }
    if json {
        return Ok(f); // a manifest file: layers known, packages not
    }
    let file = std::fs::File::open(prev).map_err(io_err(prev))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(file));
    let Ok(entries) = ar.entries() else {
        return Ok(f);
    };
    let configs: BTreeMap<String, &str> = m
        .images
        .iter()
        .map(|i| (super::blob_path(&i.config), i.reference.as_str()))
        .collect();
    for e in entries {
        let Ok(e) = e else { break };
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let want = path == ANNEX || configs.contains_key(&path);
        if !want || e.size() > MAX_DOC {
            continue;
        }
        let mut b = Vec::new();
        { e }.read_to_end(&mut b).map_err(io_err(prev))?;
        if path == ANNEX {
            f.packages = packages_of(&b);
        } else {
            let c: Value = serde_json::from_slice(&b).unwrap_or_default();
            for (p, r) in &configs {
                if *p == path {
                    f.run.insert(r.to_string(), run_of(&c));
                }
            }
        }
    }
    Ok(f)
}

/// One package line of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Move {
    name: String,
    old: Option<String>,
    new: Option<String>,
    cves: Vec<String>,
}

/// Build the report (as JSON; [`render`] gives the three files).
pub fn report(
    out: &Path,
    m: &Manifest,
    now: &Facts,
    prev: Option<&Facts>,
) -> Result<Value, BundleError> {
    let sizes: BTreeMap<&str, (u64, bool)> = m
        .blobs
        .iter()
        .map(|b| (b.digest.as_str(), (b.size, b.included)))
        .collect();
    let prev_pk = prev.and_then(|p| p.packages.as_ref());
    let mut images = Vec::new();
    let mut wanted: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut moves_of = BTreeMap::new();
    for i in &m.images {
        let new_pk = now.packages.as_ref().and_then(|p| p.get(&i.reference));
        let old_pk = prev_pk.map(|p| p.get(&i.reference).cloned().unwrap_or_default());
        let moves = moves(new_pk, old_pk.as_ref());
        for mv in &moves {
            if let (Some(o), Some(n)) = (&mv.old, &mv.new) {
                wanted.insert(mv.name.clone(), (o.clone(), n.clone()));
            }
        }
        moves_of.insert(i.reference.clone(), (moves, new_pk, old_pk));
    }
    let cves = cves(out, m, &wanted)?;
    for i in &m.images {
        let (moves, new_pk, old_pk) = &moves_of[&i.reference];
        let lic = |p: Option<&Packages>| -> BTreeSet<String> {
            p.into_iter()
                .flatten()
                .map(|(_, (_, l))| l.clone())
                .collect()
        };
        let (now_l, old_l) = (lic(*new_pk), lic(old_pk.as_ref()));
        let (mut new_layers, mut new_bytes, mut all_bytes) = (0usize, 0u64, 0u64);
        for l in &i.layers {
            let (size, inc) = sizes.get(l.as_str()).copied().unwrap_or((0, false));
            all_bytes += size;
            if inc {
                new_layers += 1;
                new_bytes += size;
            }
        }
        let old_run = prev.and_then(|p| p.run.get(&i.reference));
        let new_run = now.run.get(&i.reference);
        let previous = prev.and_then(|p| p.images.get(&i.reference));
        images.push(json!({
            "reference": i.reference,
            "manifest": i.manifest,
            "previousManifest": previous,
            "status": match previous {
                None if prev.is_some() => "new",
                None => "unknown",
                Some(d) if d == &i.manifest => "unchanged",
                Some(_) => "changed",
            },
            "packages": moves.iter().map(|mv| json!({
                "name": mv.name,
                "old": mv.old,
                "new": mv.new,
                "cves": cves.get(&mv.name).filter(|_| mv.old.is_some() && mv.new.is_some()).cloned().unwrap_or_default(),
            })).collect::<Vec<_>>(),
            "packagesCompared": old_pk.is_some(),
            "licensesAdded": if old_pk.is_some() { now_l.difference(&old_l).cloned().collect::<Vec<_>>() } else { Vec::new() },
            "licensesRemoved": old_l.difference(&now_l).cloned().collect::<Vec<_>>(),
            "layers": i.layers.len(),
            "layersNew": new_layers,
            "bytes": all_bytes,
            "bytesNew": new_bytes,
            "runCommand": match (old_run, new_run) {
                (Some(o), Some(n)) if o != n => json!({"old": o, "new": n}),
                _ => Value::Null,
            },
        }));
    }
    let removed: Vec<&String> = prev
        .map(|p| {
            p.images
                .keys()
                .filter(|r| !m.images.iter().any(|i| &i.reference == *r))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "reportVersion": VERSION,
        "release": m.release,
        "base": m.base.as_ref().map(|b| json!({"release": b.release, "manifest": b.manifest})),
        "images": images,
        "imagesRemoved": removed,
    }))
}

/// The package lines of an image: every package when nothing is known of
/// the previous release, else those that moved, came or went.
fn moves(new: Option<&Packages>, old: Option<&Packages>) -> Vec<Move> {
    let empty = Packages::new();
    let new = new.unwrap_or(&empty);
    let Some(old) = old else {
        return new
            .iter()
            .map(|(n, (v, _))| Move {
                name: n.clone(),
                old: None,
                new: Some(v.clone()),
                cves: Vec::new(),
            })
            .collect();
    };
    let names: BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| {
            let (o, v) = (old.get(n).map(|x| &x.0), new.get(n).map(|x| &x.0));
            (o != v).then(|| Move {
                name: n.clone(),
                old: o.cloned(),
                new: v.cloned(),
                cves: Vec::new(),
            })
        })
        .collect()
}

/// CVE ids per moved package, from its `changelog.Debian.gz` in the layers
/// this bundle carries (the entries after the old version, as `update`).
fn cves(
    out: &Path,
    m: &Manifest,
    wanted: &BTreeMap<String, (String, String)>,
) -> Result<BTreeMap<String, Vec<String>>, BundleError> {
    let mut found = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    let paths: BTreeMap<String, &String> = wanted
        .keys()
        .map(|p| (format!("usr/share/doc/{p}/changelog.Debian.gz"), p))
        .collect();
    let layers: BTreeSet<&String> = m.images.iter().flat_map(|i| &i.layers).collect();
    for b in m
        .blobs
        .iter()
        .filter(|b| b.included && layers.contains(&b.digest))
    {
        let p = out.join(b.path());
        let r = crate::layer::open_blob(&p).map_err(io_err(&p))?;
        let mut ar = tar::Archive::new(r);
        let Ok(entries) = ar.entries() else { continue };
        for e in entries {
            let Ok(e) = e else { break };
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").trim_start_matches('/');
            let Some(pkg) = paths.get(name) else { continue };
            if found.contains_key(*pkg) || e.size() > MAX_DOC {
                continue;
            }
            let mut gz = Vec::new();
            { e }.read_to_end(&mut gz).map_err(io_err(&p))?;
            let (old, new) = &wanted[*pkg];
            let (o, n) = (
                old.parse::<debversion::Version>(),
                new.parse::<debversion::Version>(),
            );
            if let (Some(text), Ok(o), Ok(n)) = (changelog::decode(&gz), o, n) {
                let entries = changelog::between(&text, &o, &n);
                let all: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
                found.insert(pkg.to_string(), changelog::cves(&all.join("\n")));
            }
        }
    }
    Ok(found)
}

/// The three files: `(entry, bytes)` for Markdown, HTML and JSON.
pub fn render(r: &Value) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (MARKDOWN, markdown(r).into_bytes()),
        (HTML, html(r).into_bytes()),
        (JSON, crate::json::to_canonical_pretty(r)),
    ]
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn cve_list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
    items.join(", ")
}

fn run(v: &Value) -> String {
    format!(
        "entrypoint {}, cmd {}",
        serde_json::to_string(&v["entrypoint"]).unwrap_or_default(),
        serde_json::to_string(&v["cmd"]).unwrap_or_default()
    )
}

/// The lines of the report, as (kind, text) pieces both renderings share.
fn heading(r: &Value) -> (String, String) {
    let title = format!("Upgrade to release {}", s(&r["release"]));
    let base = match r["base"].as_object() {
        Some(b) => format!(
            "A delta on top of {} (manifest {}): install that release first.",
            s(&b["release"]),
            s(&b["manifest"])
        ),
        None => "A full release: it installs on its own.".into(),
    };
    (title, base)
}

fn image_facts(i: &Value) -> Vec<String> {
    let mut v = vec![format!(
        "Manifest {} ({}{}).",
        s(&i["manifest"]),
        s(&i["status"]),
        match i["previousManifest"].as_str() {
            Some(p) if p != i["manifest"] => format!(", was {p}"),
            _ => String::new(),
        }
    )];
    v.push(format!(
        "New layers: {} of {}, {} of {} bytes.",
        i["layersNew"], i["layers"], i["bytesNew"], i["bytes"]
    ));
    v.push(format!(
        "Licenses added: {}. Licenses removed: {}.",
        list(&i["licensesAdded"]),
        list(&i["licensesRemoved"])
    ));
    v.push(match i["runCommand"].as_object() {
        Some(c) => format!(
            "Run command changed: {} → {}.",
            run(&c["old"]),
            run(&c["new"])
        ),
        None => "Run command: unchanged (or not known before).".into(),
    });
    if i["packagesCompared"] != true {
        v.push("The previous release's packages are not known (--since named a manifest or an inventory): every package is listed with its version.".into());
    }
    v
}

fn markdown(r: &Value) -> String {
    let (title, base) = heading(r);
    let mut o = format!("# {title}\n\n{base}\n");
    for i in r["images"].as_array().into_iter().flatten() {
        o.push_str(&format!("\n## {}\n\n", s(&i["reference"])));
        for line in image_facts(i) {
            o.push_str(&format!("{line}\n"));
        }
        let pk = i["packages"].as_array().cloned().unwrap_or_default();
        if pk.is_empty() {
            o.push_str("\nNo package changed.\n");
            continue;
        }
        o.push_str("\n| package | old | new | CVEs |\n|---|---|---|---|\n");
        for p in pk {
            o.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                s(&p["name"]),
                s(&p["old"]),
                s(&p["new"]),
                cve_list(&p["cves"])
            ));
        }
    }
    let removed = list(&r["imagesRemoved"]);
    if removed != "none" {
        o.push_str(&format!("\nImages no longer in the release: {removed}.\n"));
    }
    o
}

fn html(r: &Value) -> String {
    use crate::sbom::html::esc;
    let (title, base) = heading(r);
    let mut o = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>\n<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.2em .5em;text-align:left}}</style></head><body>\n<h1>{0}</h1>\n<p>{1}</p>\n",
        esc(&title),
        esc(&base)
    );
    for i in r["images"].as_array().into_iter().flatten() {
        o.push_str(&format!("<h2>{}</h2>\n", esc(&s(&i["reference"]))));
        for line in image_facts(i) {
            o.push_str(&format!("<p>{}</p>\n", esc(&line)));
        }
        let pk = i["packages"].as_array().cloned().unwrap_or_default();
        if pk.is_empty() {
            o.push_str("<p>No package changed.</p>\n");
            continue;
        }
        o.push_str("<table><tr><th>package</th><th>old</th><th>new</th><th>CVEs</th></tr>\n");
        for p in pk {
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&s(&p["name"])),
                esc(&s(&p["old"])),
                esc(&s(&p["new"])),
                esc(&cve_list(&p["cves"]))
            ));
        }
        o.push_str("</table>\n");
    }
    let removed = list(&r["imagesRemoved"]);
    if removed != "none" {
        o.push_str(&format!(
            "<p>Images no longer in the release: {}.</p>\n",
            esc(&removed)
        ));
    }
    o.push_str("</body></html>\n");
    o
}
