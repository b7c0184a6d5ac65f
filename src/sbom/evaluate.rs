//! Evaluate a machine-readable (DEP-5) copyright file for one binary package.
//!
//! Every `Files:` stanza is kept or dropped with a reason
//! ([`crate::sbom::applies::decide`], overridden by a curated path decision);
//! the `License:` line of every kept stanza is resolved with its text
//! ([`crate::sbom::terms`]). The result carries the per-stanza evidence the
//! reports show, and the risks a reviewer must look at as flags.

use crate::sbom::applies::{self, Decision, FileContext, PackageEvidence};
use crate::sbom::license::{
    Confidence, DetectionMethod, ReviewFlag, StanzaEvidence, and_all, expression_terms, is_copyleft,
};
use crate::sbom::{curated, dep5, terms, text};
use std::collections::BTreeSet;

/// Result of evaluating a copyright text.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The expression (None = NOASSERTION).
    pub expression: Option<String>,
    /// How.
    pub method: DetectionMethod,
    /// Flags raised.
    pub flags: Vec<ReviewFlag>,
    /// Decisions taken, as sentences.
    pub notes: Vec<String>,
    /// Per stanza (or per prose grant): kept/dropped, why, how identified.
    pub stanzas: Vec<StanzaEvidence>,
    /// How sure the engine is.
    pub confidence: Confidence,
}

const LATER_GRANT: &[&str] = &[
    "or (at your option) any later version",
    "or any later version",
    ", or any later version",
    "or (at your option) any later",
];

/// A GNU "-only" label whose own grant text says "or any later version" is
/// an or-later grant (e.g. `GFDL-NIV-1.3` with "Version 1.3 or any later
/// version"). Full license texts are excluded: their appendix quotes the
/// or-later wording.
fn upgrade_only(expr: &str, body: &str) -> Option<String> {
    if expr.contains(' ') || !expr.ends_with("-only") {
        return None;
    }
    let norm = text::normalize(body);
    (norm.len() < 2000
        && !norm.contains("terms and conditions")
        && LATER_GRANT.iter().any(|g| norm.contains(g)))
    .then(|| expr.replace("-only", "-or-later"))
}

fn decide_stanza(
    st: &dep5::FilesStanza,
    cur: Option<&curated::CuratedSource>,
    ev: &PackageEvidence,
    cx: &FileContext,
    doc_only_umbrella: bool,
) -> Decision {
    if doc_only_umbrella {
        let star = st.patterns.iter().any(|p| p == "*");
        return Decision {
            keep: star,
            reason: if star {
                "the package ships only documentation: its umbrella Files: * stanza applies".into()
            } else {
                "the package ships only documentation".into()
            },
            by_default: false,
        };
    }
    let mut drops = Vec::new();
    for p in &st.patterns {
        let d = match cur.and_then(|c| c.path_decision(p)) {
            Some(c) => Decision {
                keep: c.shipped,
                reason: format!("curated: {}", c.reason),
                by_default: false,
            },
            None => applies::decide(p, ev, cx),
        };
        if d.keep {
            return Decision {
                reason: format!("{p}: {}", d.reason),
                ..d
            };
        }
        drops.push(format!("{p}: {}", d.reason));
    }
    Decision {
        keep: false,
        reason: drops.join("; "),
        by_default: false,
    }
}

/// In a library-only package, the umbrella `Files: *` stanza is the rest of
/// the source (its programs) when another stanza names the library's own
/// source directory (not one of its subdirectories) with a wildcard (`libacl/*.c`, `keyutils.*`, or `lib/*` when
/// no directory carries the library's name).
fn umbrella_is_other_parts(
    d: &dep5::Dep5,
    ev: &PackageEvidence,
    cx: &FileContext,
) -> Option<String> {
    if !ev.library_only() {
        return None;
    }
    let stems = ev.library_stems();
    d.files
        .iter()
        .flat_map(|s| s.patterns.iter())
        .find(|p| {
            p.contains('*')
                && *p != "*"
                && (cx.named
                    && cx
                        .library_dirs
                        .iter()
                        .any(|l| p.strip_prefix(l.as_str()).is_some_and(|f| !f.contains('/')))
                    || !cx.named && *p == "lib/*"
                    || !p.contains('/') && stems.contains(p.split('.').next().unwrap_or("")))
        })
        .cloned()
}

struct Acc {
    parts: Vec<String>,
    flags: Vec<ReviewFlag>,
    notes: Vec<String>,
    stanzas: Vec<StanzaEvidence>,
    weak: bool,
}

fn license_of(
    st: &dep5::FilesStanza,
    d: &dep5::Dep5,
    acc: &mut Acc,
) -> Option<(String, Vec<String>)> {
    let label = st.license.trim();
    if label.is_empty() || label.eq_ignore_ascii_case("none") {
        return None;
    }
    let single_body = (!st.text.is_empty()).then_some(st.text.as_str());
    let body_for = |name: &str| -> Option<&str> {
        if name.eq_ignore_ascii_case(label) {
            single_body.or_else(|| d.text_for(name))
        } else {
            d.text_for(name)
        }
    };
    match terms::resolve_line(label, &body_for) {
        Ok(r) => {
            for n in &r.unknown_names {
                acc.flags.push(ReviewFlag::UnknownLicenseName(n.clone()));
            }
            let mut how: Vec<String> = r
                .terms
                .iter()
                .map(|t| format!("{} → {} ({})", t.name, t.spdx, t.how))
                .collect();
            for t in r.terms.iter().filter(|t| t.weak) {
                acc.weak = true;
                acc.flags.push(ReviewFlag::WeakTextMatch(t.name.clone()));
            }
            let mut expr = r.expression;
            if let Some(up) = single_body
                .or_else(|| d.text_for(label))
                .and_then(|b| upgrade_only(&expr, b))
            {
                how.push(format!(
                    "{expr} → {up}: its grant text says 'or any later version'"
                ));
                expr = up;
            }
            Some((expr, how))
        }
        Err(e) => {
            acc.flags
                .push(ReviewFlag::UnknownLicenseName(label.to_string()));
            acc.notes.push(e.to_string());
            None
        }
    }
}

/// Evaluate a DEP-5 copyright file for a binary package of `source`.
pub fn evaluate_dep5(text_in: &str, source: &str, ev: &PackageEvidence) -> Evaluation {
    let d = dep5::parse(text_in);
    let cur = curated::for_source(source);
    let all: Vec<&str> = d
        .files
        .iter()
        .flat_map(|s| s.patterns.iter().map(String::as_str))
        .collect();
    let cx = FileContext::new(&all, ev);
    let has_star = all.contains(&"*");
    let doc_only = ev.doc_only() && has_star;
    let umbrella_other = umbrella_is_other_parts(&d, ev, &cx);
    let mut acc = Acc {
        parts: Vec::new(),
        flags: Vec::new(),
        notes: Vec::new(),
        stanzas: Vec::new(),
        weak: false,
    };
    let mut by_default_copyleft = Vec::new();
    let mut dropped_debian = Vec::new();
    for st in &d.files {
        let mut dec = decide_stanza(st, cur, ev, &cx, doc_only);
        if let (true, Some(lib)) = (st.patterns.iter().any(|p| p == "*"), &umbrella_other) {
            if !doc_only {
                dec = Decision {
                    keep: false,
                    reason: format!(
                        "*: the package ships only the library, whose sources {lib} names; the umbrella stanza covers the other parts of the source"
                    ),
                    by_default: false,
                };
            }
        }
        let resolved = if dec.keep {
            license_of(st, &d, &mut acc)
        } else {
            None
        };
        if !dec.keep && st.patterns.iter().all(|p| p.starts_with("debian/")) {
            dropped_debian.push(st.license.clone());
        }
        let expr = resolved.as_ref().map(|(e, _)| e.clone());
        if let Some(e) = &expr {
            let top_level_files = st.patterns.iter().all(|p| !p.contains(['/', '*', '?']));
            if dec.by_default && (is_copyleft(e) || top_level_files) {
                by_default_copyleft.push((st.patterns.join(" "), e.clone()));
            }
            acc.parts.push(e.clone());
        }
        if !dec.keep {
            acc.notes.push(format!(
                "dropped Files: {} ({}): {}",
                st.patterns.join(" "),
                st.license,
                dec.reason
            ));
        }
        acc.stanzas.push(StanzaEvidence {
            scope: format!("Files: {}", st.patterns.join(" ")),
            label: st.license.clone(),
            expression: expr,
            kept: dec.keep,
            reason: dec.reason.clone(),
            by_default: dec.by_default,
            how: resolved.map(|(_, h)| h).unwrap_or_default(),
        });
    }
    finish(acc, by_default_copyleft, dropped_debian, ev)
}

fn finish(
    mut acc: Acc,
    by_default_copyleft: Vec<(String, String)>,
    dropped_debian: Vec<String>,
    ev: &PackageEvidence,
) -> Evaluation {
    let expression = and_all(&acc.parts);
    let terms = expression
        .as_deref()
        .map(expression_terms)
        .unwrap_or_default();
    // Terms that only a default-kept stanza brings in: copyleft, or any
    // terms of individual top-level files (often stand-alone helpers).
    for (pat, e) in by_default_copyleft {
        let base = |t: &String| t.split(" WITH ").next().unwrap_or("").to_string();
        let others: BTreeSet<String> = acc
            .parts
            .iter()
            .filter(|p| **p != e)
            .flat_map(|o| expression_terms(o))
            .map(|t| base(&t))
            .collect();
        let new: Vec<String> = expression_terms(&e)
            .into_iter()
            .filter(|t| !others.contains(&base(t)))
            .collect();
        let top_level = !pat.contains(['/', '*', '?']);
        if new.iter().any(|t| is_copyleft(t)) || top_level && !new.is_empty() {
            acc.flags.push(ReviewFlag::KeptByDefault(pat));
        }
    }
    // Debian's own files (scripts in debian/) may be shipped.
    if !ev.scripts.is_empty() {
        for lab in dropped_debian {
            let differs = names_differ(&lab, &terms);
            if differs {
                acc.flags.push(ReviewFlag::DebianFilesMayShip(lab));
            }
        }
    }
    let method = if expression.is_some() {
        DetectionMethod::Dep5
    } else {
        DetectionMethod::Unknown
    };
    if expression.is_none() {
        acc.flags.push(ReviewFlag::UnknownLicense);
    }
    let default_kept = acc.stanzas.iter().any(|s| s.kept && s.by_default);
    let confidence = if expression.is_none() || acc.weak {
        Confidence::Low
    } else if default_kept || !acc.flags.is_empty() {
        Confidence::Medium
    } else {
        Confidence::High
    };
    Evaluation {
        expression,
        method,
        flags: acc.flags,
        notes: acc.notes,
        stanzas: acc.stanzas,
        confidence,
    }
}

fn names_differ(label: &str, terms: &[String]) -> bool {
    match crate::sbom::names::translate_line(label) {
        Ok(t) => expression_terms(&t.expression)
            .iter()
            .any(|x| !terms.contains(x)),
        Err(_) => true,
    }
}
