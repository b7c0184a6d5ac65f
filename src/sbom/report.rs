//! Legal reports: the license inventory as Markdown, HTML and CSV, and the
//! list of sources that need a written source offer.
//!
//! One row per shipped binary package: package, version, architecture,
//! source and source version, declared license (or NOASSERTION), copyleft
//! flag, detection method, review flags and the images that ship it.

use super::license::{self, LicenseFinding, ReviewFlag, StanzaEvidence};
use super::{Findings, SbomImage, key};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Binary package.
    pub package: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// Source package.
    pub source: String,
    /// Source version.
    pub source_version: String,
    /// Declared license or `NOASSERTION`.
    pub license: String,
    /// Copyleft license present.
    pub copyleft: bool,
    /// Source offer required.
    pub source_offer: bool,
    /// Detection method label.
    pub method: String,
    /// Review flags.
    pub flags: Vec<String>,
    /// Where the copyright file came from, when a symlink was followed.
    pub copyright_from: Option<String>,
    /// Images shipping the package.
    pub images: Vec<String>,
    /// `high`, `medium` or `low`.
    pub confidence: String,
    /// Per stanza / grant: kept or dropped, why, how identified.
    pub stanzas: Vec<StanzaEvidence>,
    /// Other decisions (symlinks followed, curated rules not applied).
    pub notes: Vec<String>,
    /// The verbatim copyright file, relative to `legal/`.
    pub attribution: Option<String>,
    /// Referenced common-licenses texts, relative to `legal/`.
    pub common_licenses: Vec<String>,
}

impl Row {
    /// The evidence as short lines: kept stanzas first, then dropped ones.
    pub fn evidence_lines(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for s in self
            .stanzas
            .iter()
            .filter(|s| s.kept)
            .chain(self.stanzas.iter().filter(|s| !s.kept))
        {
            v.push(format!(
                "{} {} [{}] → {}: {}{}",
                if s.kept { "KEPT" } else { "DROPPED" },
                s.scope,
                s.label,
                s.expression.as_deref().unwrap_or("-"),
                s.reason,
                if s.how.is_empty() {
                    String::new()
                } else {
                    format!(" (identified: {})", s.how.join("; "))
                }
            ));
        }
        v.extend(
            self.notes
                .iter()
                .filter(|n| !n.starts_with("dropped "))
                .cloned(),
        );
        v
    }
}

/// Attribution paths by package key, relative to `legal/`.
pub type Attribution = BTreeMap<(String, String, String), String>;

/// Rows for the shipped packages of `images`, sorted by package.
pub fn rows(images: &[SbomImage], findings: &Findings, attribution: &Attribution) -> Vec<Row> {
    let mut by_key: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    for img in images {
        let label = format!("{}:{}", img.name, img.tag);
        for p in &img.packages {
            let k = key(p);
            let f: Option<&LicenseFinding> = findings.get(&k);
            let attr = attribution.get(&k).cloned();
            let row = by_key.entry(k).or_insert_with(|| {
                let expr = f.and_then(|f| f.expression.clone());
                Row {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    source: p.source.clone(),
                    source_version: p.source_version.clone(),
                    license: expr.clone().unwrap_or_else(|| "NOASSERTION".into()),
                    copyleft: expr.as_deref().is_some_and(license::is_copyleft),
                    source_offer: expr.as_deref().is_some_and(license::requires_source_offer),
                    method: f.map(|f| f.method.label()).unwrap_or("unknown").to_string(),
                    flags: f
                        .map(|f| f.flags.iter().map(ToString::to_string).collect())
                        .unwrap_or_else(|| vec!["unknown-license".into()]),
                    copyright_from: f
                        .and_then(|f| f.followed_symlink.as_ref())
                        .map(|(pkg, link)| format!("{pkg} ({link})")),
                    images: Vec::new(),
                    confidence: f.map(|f| f.confidence.label()).unwrap_or("low").to_string(),
                    stanzas: f.map(|f| f.stanzas.clone()).unwrap_or_default(),
                    notes: f.map(|f| f.notes.clone()).unwrap_or_default(),
                    attribution: attr,
                    common_licenses: f
                        .map(|f| {
                            f.common_licenses_referenced
                                .iter()
                                .filter(|n| {
                                    !f.flags
                                        .contains(&ReviewFlag::CommonLicenseMissing((*n).clone()))
                                })
                                .map(|n| format!("attribution/common-licenses/{n}"))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            });
            if !row.images.contains(&label) {
                row.images.push(label.clone());
                row.images.sort();
            }
        }
    }
    by_key.into_values().collect()
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown report.
pub fn markdown(title: &str, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# License inventory: {}\n", md_cell(title));
    let review = rows.iter().filter(|r| !r.flags.is_empty()).count();
    let _ = writeln!(
        s,
        "{} shipped package(s); {} flagged for review. Licenses are SPDX expressions declared from each package's `/usr/share/doc/<package>/copyright`; NOASSERTION means none could be determined.\n",
        rows.len(),
        review
    );
    s.push_str("| Package | Version | Arch | Source | Source version | License | Confidence | Copyleft | Method | Review flags | Images |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let mut flags = r.flags.join(", ");
        if let Some(c) = &r.copyright_from {
            flags = format!("{flags} (copyright from {c})");
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_cell(&r.package),
            md_cell(&r.version),
            md_cell(&r.architecture),
            md_cell(&r.source),
            md_cell(&r.source_version),
            md_cell(&r.license),
            md_cell(&r.confidence),
            if r.copyleft { "yes" } else { "no" },
            md_cell(&r.method),
            md_cell(flags.trim()),
            md_cell(&r.images.join(", "))
        );
    }
    s.push_str("\n## Review flags\n\n| Flag | What to look at |\n|---|---|\n");
    for (f, what) in ReviewFlag::LEGEND {
        let _ = writeln!(s, "| `{f}` | {} |", md_cell(what));
    }
    s.push_str("\n## Evidence per package\n");
    for r in rows {
        let _ = writeln!(s, "\n### {} {}\n", md_cell(&r.package), md_cell(&r.version));
        let _ = writeln!(
            s,
            "`{}` (confidence {}, method {})\n",
            r.license, r.confidence, r.method
        );
        if let Some(a) = &r.attribution {
            let _ = writeln!(s, "Copyright file: [{a}]({a})\n");
        }
        for l in r.evidence_lines() {
            let _ = writeln!(s, "- {}", md_cell(&l));
        }
    }
    s
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV report (RFC 4180 quoting).
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "package,version,architecture,source,source_version,license,confidence,copyleft,source_offer,method,review_flags,copyright_from,images,evidence\r\n",
    );
    for r in rows {
        let cells = [
            r.package.clone(),
            r.version.clone(),
            r.architecture.clone(),
            r.source.clone(),
            r.source_version.clone(),
            r.license.clone(),
            r.confidence.clone(),
            r.copyleft.to_string(),
            r.source_offer.to_string(),
            r.method.clone(),
            r.flags.join(";"),
            r.copyright_from.clone().unwrap_or_default(),
            r.images.join(";"),
            r.evidence_lines().join(" | "),
        ];
        s.push_str(
            &cells
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        s.push_str("\r\n");
    }
    s
}

/// `legal/source-offer.md`: source packages (exact versions) whose binaries
/// carry GPL/LGPL/AGPL/MPL-style licenses.
pub fn source_offer(rows: &[Row]) -> String {
    let mut by_src: BTreeMap<(String, String), (BTreeSet<String>, BTreeSet<String>)> =
        BTreeMap::new();
    for r in rows.iter().filter(|r| r.source_offer) {
        let e = by_src
            .entry((r.source.clone(), r.source_version.clone()))
            .or_default();
        e.0.insert(r.package.clone());
        e.1.insert(r.license.clone());
    }
    let mut s = String::from("# Written offer for source code\n\n");
    s.push_str(
        "The images of this build contain binaries built from the Debian source packages below, \
         whose licenses (GPL, LGPL, AGPL, MPL and similar) oblige distributors to make the corresponding source available. \
         Debian archives the exact sources at the listed snapshot locations. This is a template: legal review must \
         add who to contact and for how long the offer stands before the images are distributed.\n\n",
    );
    s.push_str("| Source package | Source version | Binary packages | Licenses | Source location |\n|---|---|---|---|---|\n");
    for ((src, ver), (bins, lics)) in &by_src {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | https://snapshot.debian.org/package/{}/{}/ |",
            md_cell(src),
            md_cell(ver),
            md_cell(&bins.iter().cloned().collect::<Vec<_>>().join(", ")),
            md_cell(&lics.iter().cloned().collect::<Vec<_>>().join("; ")),
            super::purl_encode(src),
            super::purl_encode(ver)
        );
    }
    if by_src.is_empty() {
        s.push_str("| (none) | | | | |\n");
    }
    s
}

/// The machine-readable annex (`legal/<image>.licenses.json`): every row
/// with its confidence, flags and per-stanza evidence.
pub fn annex(title: &str, rows: &[Row]) -> serde_json::Value {
    use serde_json::json;
    let packages: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "package": r.package,
                "version": r.version,
                "architecture": r.architecture,
                "source": r.source,
                "source_version": r.source_version,
                "license": r.license,
                "confidence": r.confidence,
                "method": r.method,
                "copyleft": r.copyleft,
                "review_flags": r.flags,
                "copyright_from": r.copyright_from,
                "attribution": r.attribution,
                "common_licenses": r.common_licenses,
                "images": r.images,
                "notes": r.notes,
                "stanzas": r.stanzas.iter().map(|s| json!({
                    "scope": s.scope,
                    "label": s.label,
                    "expression": s.expression,
                    "kept": s.kept,
                    "reason": s.reason,
                    "kept_by_default": s.by_default,
                    "identified": s.how,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "title": title,
        "flag_legend": ReviewFlag::LEGEND.iter().map(|(f, w)| json!({"flag": f, "meaning": w})).collect::<Vec<_>>(),
        "packages": packages,
    })
}
