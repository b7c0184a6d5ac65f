//! Evaluate a free-form (non-DEP-5) copyright file for one binary package.
//!
//! The file is cut into paragraphs (comment and quote marks removed). Then:
//! * GNU grant sentences (GPL/LGPL/AGPL/GFDL, a common-licenses pointer used
//!   as the grant) give GNU ids with the version rules of their sentence; two
//!   grants joined by a lone "or" paragraph are one `OR` choice;
//! * other license texts are identified by their text against the SPDX list
//!   ([`crate::sbom::identify`]) over windows of consecutive paragraphs;
//! * "public domain" statements give `LicenseRef-public-domain`;
//! * per-file inventories (`* Copyright X; 2-clause BSD:` followed by file
//!   names) and DEP-5 stanzas appended to the prose are read per file.
//!
//! Every grant is scoped by its paragraph and the introduction before it
//! ("For the documentation, this terms apply:"): Debian packaging, manuals
//! the package does not ship, tests and build system, and files named in the
//! context that the package does not ship ([`crate::sbom::applies`]) are
//! dropped with a reason.

use crate::sbom::applies::{self, FileContext, PackageEvidence};
use crate::sbom::evaluate::Evaluation;
use crate::sbom::license::{
    Confidence, DetectionMethod, ReviewFlag, StanzaEvidence, and_all, canonical_expression,
};
use crate::sbom::{curated, dep5, identify, terms, text};
use regex::Regex;
use std::sync::LazyLock;

/// Paragraphs of `text`, with `|`, `*`, `/*`, `*/` line prefixes removed.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let l = raw
            .trim()
            .trim_start_matches("/*")
            .trim_end_matches("*/")
            .trim_start_matches(['|', '*'])
            .trim();
        let rule = !l.is_empty() && l.chars().all(|c| matches!(c, '-' | '=' | '_'));
        if l.is_empty() || rule {
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
            continue;
        }
        cur.push_str(l);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

static PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[a-z0-9_.-]+/[a-z0-9_./-]*[a-z0-9_-]\.[a-z0-9]+\b").expect("valid regex")
});

/// Why a grant in this context does not apply, if it does not.
fn context_drop(
    intro: &str,
    own: &str,
    doc_grant: bool,
    ev: &PackageEvidence,
    cx: &FileContext,
) -> Option<String> {
    let ctx = format!("{intro} {own}");
    let ctx = ctx.as_str();
    const DEBIAN: &[&str] = &[
        "debian packaging",
        "debian specific",
        "debian-specific",
        "packaging is",
        "packaging was",
        "debian package was",
        "debian modifications",
        "debian changes",
    ];
    if let Some(k) = DEBIAN.iter().find(|k| ctx.contains(*k)) {
        return Some(format!("about the Debian packaging (\"{k}\")"));
    }
    const OTHER: &[&str] = &["build system", "test suite", "tests)", "other parts"];
    if let Some(k) = OTHER.iter().find(|k| ctx.contains(*k)) {
        return Some(format!("covers parts the package does not ship (\"{k}\")"));
    }
    // Only a GFDL grant or an introduction about manuals scopes a grant to
    // documentation ("associated documentation files" is in the MIT text).
    let docs = doc_grant || intro.contains("documentation") || intro.contains("manual");
    if docs && !ev.has_info() {
        return Some("documentation terms, and the package ships no info manual".into());
    }
    for m in PATH.find_iter(ctx) {
        let p = m.as_str();
        if p.contains("common-licenses") || p.starts_with("usr/") || p.contains("www.") {
            continue;
        }
        let d = applies::decide(p, ev, cx);
        if !d.keep {
            return Some(format!("about {p}: {}", d.reason));
        }
    }
    None
}

/// The introduction of paragraph `k`: a previous paragraph (up to three back,
/// not past another grant) ending with a colon.
fn intro(norm: &[String], k: usize, has_grant: &[bool]) -> String {
    for back in 1..=3 {
        let Some(i) = k.checked_sub(back) else { break };
        if norm[i].ends_with(':') && !has_grant[i] {
            return norm[i].clone();
        }
        if has_grant[i] && norm[i] != "or" && back > 1 {
            break;
        }
    }
    String::new()
}

struct Found {
    expr: String,
    par: usize,
    evidence: String,
    weak: bool,
}

fn gnu_found(norm: &[String], pars: &[String]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for (k, p) in pars.iter().enumerate() {
        for g in text::gnu_grants(p) {
            // "A … or … B" across a lone "or" paragraph: one choice.
            if let Some(prev) = out.last_mut() {
                if prev.par + 2 == k && norm[k - 1] == "or" && !prev.expr.contains(" OR ") {
                    prev.expr = format!("{} OR {}", prev.expr, g.expression);
                    prev.evidence = format!("{} | or | {}", prev.evidence, g.evidence);
                    prev.par = k;
                    continue;
                }
            }
            out.push(Found {
                expr: g.expression,
                par: k,
                evidence: g.evidence,
                weak: false,
            });
        }
    }
    out
}

const STARTS: &[&str] = &[
    "permission is hereby granted",
    "redistribution and use",
    "permission to use, copy",
    "public domain",
    "permission is granted to anyone",
    "python software foundation license",
    "apache license",
];

fn identified_found(norm: &[String], pars: &[String], skip: &[bool]) -> Vec<Found> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < pars.len() {
        if skip[k] || !STARTS.iter().any(|s| norm[k].contains(s)) {
            k += 1;
            continue;
        }
        let mut best: Option<(identify::TextMatch, usize)> = None;
        for j in k..pars.len().min(k + 6) {
            if j > k && skip[j] {
                break;
            }
            let window = pars[k..=j].concat();
            // The longest window that still matches strongly wins (it holds
            // the distinguishing clause, e.g. X11's advertising clause after
            // the MIT text); otherwise the best score.
            if let Some(m) = identify::identify(&window) {
                let better = match &best {
                    None => true,
                    Some(_) if m.score >= identify::STRONG => true,
                    Some((b, _)) => m.score > b.score,
                };
                if better {
                    best = Some((m, j));
                }
            }
        }
        match best {
            Some((m, j)) => {
                out.push(Found {
                    expr: m.id.clone(),
                    par: k,
                    evidence: format!(
                        "text match {:.2} over paragraphs {}-{}: \"{}…\"",
                        m.score,
                        k + 1,
                        j + 1,
                        clip(&norm[k], 90)
                    ),
                    weak: m.score < identify::STRONG,
                });
                k = j + 1;
            }
            None => {
                const PD: &[&str] = &[
                    "is in the public domain",
                    "placed in the public domain",
                    "public domain software",
                    "released into the public domain",
                    "put into the public domain",
                    "is public domain",
                ];
                if let Some(g) = text::single_grant(&pars[k])
                    .filter(|g| !g.expression.contains("GPL") && !g.expression.starts_with("GFDL"))
                {
                    // A short notice ("licenses this work to you under the
                    // Apache License, Version 2.0"), not a whole text.
                    out.push(Found {
                        expr: g.expression,
                        par: k,
                        evidence: format!("grant notice: \"{}\"", clip(&g.evidence, 90)),
                        weak: false,
                    });
                } else if let Some(ph) = PD.iter().find(|ph| norm[k].contains(*ph)) {
                    out.push(Found {
                        expr: "LicenseRef-public-domain".into(),
                        par: k,
                        evidence: format!("\"{ph}\""),
                        weak: false,
                    });
                }
                k += 1;
            }
        }
    }
    out
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

static BULLET_LICENSE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\b(l?gpl) \(v(\d(?:\.\d)?)( or later)?\))|(?:\b([0-4])-clause bsd)|(public domain)|(fsf all permissive)")
        .expect("valid regex")
});

fn bullet_license(head: &str) -> Option<String> {
    let c = BULLET_LICENSE.captures(head)?;
    if let (Some(k), Some(v)) = (c.get(1), c.get(2)) {
        let base = match (k.as_str(), v.as_str()) {
            ("gpl", "2") => "GPL-2.0",
            ("gpl", "3") => "GPL-3.0",
            ("lgpl", "2") => "LGPL-2.0",
            ("lgpl", "2.1") => "LGPL-2.1",
            ("lgpl", "3") => "LGPL-3.0",
            _ => return None,
        };
        return Some(format!(
            "{base}-{}",
            if c.get(3).is_some() {
                "or-later"
            } else {
                "only"
            }
        ));
    }
    if let Some(n) = c.get(4) {
        return Some(match n.as_str() {
            "0" => "0BSD".into(),
            n => format!("BSD-{n}-Clause"),
        });
    }
    if c.get(5).is_some() {
        return Some("LicenseRef-public-domain".into());
    }
    c.get(6).map(|_| "FSFAP".into())
}

/// `* Copyright X; <license>:` bullets followed by file lists.
fn inventory(text_in: &str, ev: &PackageEvidence, cx: &FileContext, out: &mut Vec<StanzaEvidence>) {
    let lines: Vec<&str> = text_in.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(first) = lines[i].trim_start().strip_prefix("* ") else {
            i += 1;
            continue;
        };
        let mut head = first.to_string();
        while !head.trim_end().ends_with(':')
            && i + 1 < lines.len()
            && !lines[i + 1].trim().is_empty()
            && !head.contains("):")
        {
            i += 1;
            head.push(' ');
            head.push_str(lines[i].trim());
        }
        let mut files = Vec::new();
        while i + 1 < lines.len()
            && !lines[i + 1].trim().is_empty()
            && !lines[i + 1].trim_start().starts_with("* ")
        {
            i += 1;
            files.extend(
                lines[i]
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|f| !f.is_empty() && f.contains('.'))
                    .map(str::to_string),
            );
        }
        i += 1;
        let norm = text::normalize(&head);
        let Some(expr) = bullet_license(&norm) else {
            continue;
        };
        let decisions: Vec<(String, applies::Decision)> = files
            .iter()
            .map(|f| (f.clone(), applies::decide(f, ev, cx)))
            .collect();
        let kept = decisions.iter().find(|(_, d)| d.keep);
        out.push(StanzaEvidence {
            scope: format!("inventory: {}", clip(head.trim(), 120)),
            label: expr.clone(),
            expression: kept.map(|_| expr.clone()),
            kept: kept.is_some(),
            reason: match kept {
                Some((f, d)) => format!("{f}: {}", d.reason),
                None => decisions
                    .iter()
                    .map(|(f, d)| format!("{f}: {}", d.reason))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            by_default: kept.is_some_and(|(_, d)| d.by_default),
            how: vec![format!(
                "license named in the inventory line: {}",
                clip(&norm, 120)
            )],
        });
    }
}

/// DEP-5 stanzas appended to a prose file.
fn appended_stanzas(
    text_in: &str,
    ev: &PackageEvidence,
    out: &mut Vec<StanzaEvidence>,
    flags: &mut Vec<ReviewFlag>,
) {
    let d = dep5::parse(text_in);
    let all: Vec<&str> = d
        .files
        .iter()
        .flat_map(|s| s.patterns.iter().map(String::as_str))
        .collect();
    let cx = FileContext::new(&all, ev);
    for st in &d.files {
        let dec = st
            .patterns
            .iter()
            .map(|p| applies::decide(p, ev, &cx))
            .find(|d| d.keep)
            .unwrap_or_else(|| applies::decide(&st.patterns.join(" "), ev, &cx));
        let body = (!st.text.is_empty()).then_some(st.text.as_str());
        let expr = if dec.keep {
            match terms::resolve_line(&st.license, &|n| body.or_else(|| d.text_for(n))) {
                Ok(r) => {
                    flags.extend(
                        r.unknown_names
                            .into_iter()
                            .map(ReviewFlag::UnknownLicenseName),
                    );
                    Some(r.expression)
                }
                Err(_) => {
                    flags.push(ReviewFlag::UnknownLicenseName(st.license.clone()));
                    None
                }
            }
        } else {
            None
        };
        out.push(StanzaEvidence {
            scope: format!("Files: {}", st.patterns.join(" ")),
            label: st.license.clone(),
            expression: expr,
            kept: dec.keep,
            reason: dec.reason,
            by_default: dec.by_default,
            how: Vec::new(),
        });
    }
}

/// A curated rule for the source, when its evidence is still in the text.
fn curated_rule(norm: &str, package: &str, source: &str) -> Result<Option<Evaluation>, String> {
    let Some(rule) = curated::for_source(source).and_then(|c| c.rule_for(package)) else {
        return Ok(None);
    };
    let missing: Vec<&str> = rule
        .evidence
        .iter()
        .copied()
        .filter(|e| !norm.contains(e))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "curated rule for source {source} not applied: evidence missing: {}",
            missing.join(" | ")
        ));
    }
    Ok(Some(Evaluation {
        expression: canonical_expression(rule.expression).ok(),
        method: DetectionMethod::Curated {
            reason: rule.reason.to_string(),
        },
        flags: if rule.review {
            vec![ReviewFlag::CuratedNeedsReview]
        } else {
            Vec::new()
        },
        notes: Vec::new(),
        stanzas: vec![StanzaEvidence {
            scope: format!("curated rule for source {source}"),
            label: rule.expression.to_string(),
            expression: Some(rule.expression.to_string()),
            kept: true,
            reason: rule.reason.to_string(),
            by_default: false,
            how: rule
                .evidence
                .iter()
                .map(|e| format!("evidence: \"{e}\""))
                .collect(),
        }],
        confidence: if rule.review {
            Confidence::Low
        } else {
            Confidence::Medium
        },
    }))
}

/// Evaluate a prose copyright file for binary `package` of `source`.
pub fn evaluate_prose(
    text_in: &str,
    package: &str,
    source: &str,
    ev: &PackageEvidence,
) -> Evaluation {
    let mut flags = Vec::new();
    let mut notes = Vec::new();
    match curated_rule(&text::normalize(text_in), package, source) {
        Ok(Some(e)) => return e,
        Ok(None) => {}
        Err(n) => {
            flags.push(ReviewFlag::CuratedEvidenceMissing);
            notes.push(n);
        }
    }
    let pars = paragraphs(text_in);
    let norm: Vec<String> = pars.iter().map(|p| text::normalize(p)).collect();
    let is_dep5_par: Vec<bool> = norm
        .iter()
        .map(|n| {
            n.starts_with("files:")
                || n.starts_with("license:")
                    && n.lines().count() > 0
                    && n.len() > 9
                    && !n.ends_with(':')
        })
        .collect();
    let gnu = gnu_found(&norm, &pars)
        .into_iter()
        .filter(|f| !is_dep5_par[f.par])
        .collect::<Vec<_>>();
    let mut skip = is_dep5_par.clone();
    for f in &gnu {
        skip[f.par] = true;
    }
    let mut found = gnu;
    found.extend(identified_found(&norm, &pars, &skip));
    found.sort_by_key(|f| f.par);
    let has_grant: Vec<bool> = (0..pars.len())
        .map(|k| found.iter().any(|f| f.par == k))
        .collect();
    let ev_cx = FileContext::default();
    let mut stanzas = Vec::new();
    for f in &found {
        let intro = intro(&norm, f.par, &has_grant);
        let drop = context_drop(
            &intro,
            &norm[f.par],
            f.expr.starts_with("GFDL-"),
            ev,
            &ev_cx,
        );
        if f.weak {
            flags.push(ReviewFlag::WeakTextMatch(f.expr.clone()));
        }
        stanzas.push(StanzaEvidence {
            scope: format!("paragraph {}", f.par + 1),
            label: f.expr.clone(),
            expression: drop.is_none().then(|| f.expr.clone()),
            kept: drop.is_none(),
            reason: drop.unwrap_or_else(|| "grant in the file's own terms".into()),
            by_default: false,
            how: vec![f.evidence.clone()],
        });
    }
    inventory(text_in, ev, &ev_cx, &mut stanzas);
    appended_stanzas(text_in, ev, &mut stanzas, &mut flags);
    finish_prose(stanzas, flags, notes, found.iter().any(|f| f.weak))
}

fn finish_prose(
    stanzas: Vec<StanzaEvidence>,
    mut flags: Vec<ReviewFlag>,
    notes: Vec<String>,
    weak: bool,
) -> Evaluation {
    let parts: Vec<String> = stanzas
        .iter()
        .filter_map(|s| s.expression.clone())
        .collect();
    let expression = and_all(&parts);
    let method = if expression.is_some() {
        DetectionMethod::Text
    } else {
        DetectionMethod::Unknown
    };
    if expression.is_none() {
        flags.push(ReviewFlag::UnknownLicense);
    }
    let confidence = if expression.is_none() || weak || !flags.is_empty() {
        Confidence::Low
    } else {
        Confidence::Medium
    };
    Evaluation {
        expression,
        method,
        flags,
        notes,
        stanzas,
        confidence,
    }
}
