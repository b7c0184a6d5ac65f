//! Resolve the license names of one DEP-5 `License:` line with the help of
//! the license texts in the file: the short name is a hint, the text decides.
//!
//! For every name on the line:
//! * a GNU name (`GPL-2+`, `LGPL-2+`…) whose own grant text names another
//!   version of the same license takes the version of the text (`LGPL-2+`
//!   whose text says "version 2.1 … or any later version" is
//!   `LGPL-2.1-or-later`);
//! * a name whose text is recognized ([`crate::sbom::identify`]) gets the
//!   recognized id when the name is unknown (`BSD-variant` → `bzip2-1.0.6`,
//!   `Chromium` → `BSD-3-Clause`) or when the known name's text is clearly a
//!   variant (`Expat` whose text is David Gay's → `dtoa`);
//! * an unknown name whose text says "public domain" → `LicenseRef-public-domain`;
//! * an exception recognized by its text becomes `WITH <exception>`.
//!
//! The line is then rebuilt with SPDX ids and translated by
//! [`crate::sbom::names::translate_line`], so the DEP-5 operator rules apply.

use crate::sbom::{identify, names, text};

/// How one name of a `License:` line was resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TermEvidence {
    /// The Debian name as written.
    pub name: String,
    /// The SPDX term chosen.
    pub spdx: String,
    /// How: `name`, `grant text: …`, `text match 0.97 (runner-up …)`.
    pub how: String,
    /// True when the choice rests on a weak text match.
    pub weak: bool,
}

/// A resolved `License:` line.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLine {
    /// The SPDX expression.
    pub expression: String,
    /// Names that stayed unknown (became `LicenseRef-`).
    pub unknown_names: Vec<String>,
    /// Per-name evidence.
    pub terms: Vec<TermEvidence>,
}

/// Margin within which the named license is kept although another text
/// scores a little higher (the name is a hint that breaks near-ties).
const HINT_MARGIN: f32 = 0.05;

fn is_operator(w: &str) -> bool {
    matches!(w.to_ascii_lowercase().as_str(), "or" | "and" | "&")
}

fn gnu_family(id: &str) -> Option<&'static str> {
    ["LGPL-", "AGPL-", "GPL-", "GFDL-"]
        .into_iter()
        .find(|p| id.starts_with(p))
}

/// Resolve one name (no operators, no `with` clause) given its text.
pub fn resolve_name(name: &str, body: Option<&str>) -> TermEvidence {
    let (by_name, known) = names::translate_name(name);
    let ev = |spdx: String, how: String, weak: bool| TermEvidence {
        name: name.to_string(),
        spdx,
        how,
        weak,
    };
    let Some(body) = body.filter(|b| !b.trim().is_empty()) else {
        return if known {
            ev(by_name, "name".into(), false)
        } else {
            ev(by_name, "unknown name, no text".into(), true)
        };
    };
    // GNU names: the grant sentence of the text decides version and "or later".
    if known && gnu_family(&by_name).is_some_and(|f| f != "GFDL-") {
        return gnu_from_text(name, &by_name, body);
    }
    let m = identify::identify(body);
    match (known, m) {
        (true, Some(m)) if m.id != by_name => {
            // Keep the name unless its own text is clearly a variant.
            let named_score = identify::score_of(&by_name, body).unwrap_or(0.0);
            if m.score - named_score > HINT_MARGIN && m.score >= identify::STRONG {
                ev(
                    m.id.clone(),
                    format!(
                        "text match {:.2} (the name {} scores {:.2})",
                        m.score, by_name, named_score
                    ),
                    false,
                )
            } else {
                ev(by_name, "name (text consistent)".into(), false)
            }
        }
        (true, _) => ev(by_name, "name".into(), false),
        (false, Some(m)) => ev(
            m.id.clone(),
            format!(
                "text match {:.2}{}",
                m.score,
                m.runner_up
                    .as_ref()
                    .map(|(n, s)| format!(" (runner-up {n} {s:.2})"))
                    .unwrap_or_default()
            ),
            m.score < identify::STRONG,
        ),
        (false, None) => {
            let norm = text::normalize(body);
            if let Some(g) = text::single_grant(body) {
                ev(
                    g.expression,
                    format!("grant text: \"{}\"", clip(&g.evidence)),
                    false,
                )
            } else if norm.contains("public domain") && !norm.contains("copyleft") {
                ev(
                    "LicenseRef-public-domain".into(),
                    "text says public domain".into(),
                    false,
                )
            } else {
                ev(by_name, "unknown name, text not recognized".into(), true)
            }
        }
    }
}

/// The paragraphs of `body` before the one holding an exception sentence.
fn before_exception(body: &str) -> String {
    let mut out = Vec::new();
    for par in body.split("\n\n") {
        if !identify::exceptions(&text::normalize(par)).is_empty() {
            break;
        }
        out.push(par);
    }
    out.join("\n\n")
}

/// A GNU name resolved by the single grant sentence of its own text (GFDL
/// labels keep their invariant-sections part; the caller reads their
/// or-later wording).
fn gnu_from_text(name: &str, by_name: &str, body: &str) -> TermEvidence {
    let fam = gnu_family(by_name);
    let norm = text::normalize(body);
    let mut ev = TermEvidence {
        name: name.to_string(),
        spdx: by_name.to_string(),
        how: "name".into(),
        weak: false,
    };
    if norm.len() < 3000 && !norm.contains("terms and conditions for copying") {
        let grants: Vec<text::Grant> = text::grants(body)
            .into_iter()
            .filter(|g| gnu_family(&g.expression) == fam)
            .collect();
        if let [g] = grants.as_slice() {
            if g.expression != by_name {
                ev.spdx = g.expression.clone();
                ev.how = format!("grant text: \"{}\"", clip(&g.evidence));
            }
        }
    }
    ev
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(140).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Resolve a `License:` line. `body_for(name)` returns the text given for a
/// name (the stanza's own text for a one-name line, else a stand-alone
/// `License:` paragraph).
pub fn resolve_line<'a>(
    line: &str,
    body_for: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<ResolvedLine, names::NameError> {
    let mut out_words: Vec<String> = Vec::new();
    let mut terms = Vec::new();
    // Tokens: words, with commas kept as separate tokens.
    let spaced = line.replace(',', " , ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w == "," || is_operator(w) {
            out_words.push(w.to_string());
            i += 1;
            continue;
        }
        // A name, maybe followed by `with … exception`.
        let name = w;
        let mut j = i + 1;
        let mut with_words: Vec<&str> = Vec::new();
        if words.get(j).is_some_and(|x| x.eq_ignore_ascii_case("with")) {
            j += 1;
            while j < words.len() && words[j] != "," && !is_operator(words[j]) {
                with_words.push(words[j]);
                j += 1;
            }
        }
        let whole = words[i..j].join(" ");
        let body = body_for(&whole).or_else(|| body_for(name));
        let text_exc = body
            .map(|b| identify::exceptions(&text::normalize(b)))
            .unwrap_or_default();
        // The base license is identified without the exception's paragraphs.
        let base_body = match (body, text_exc.first()) {
            (Some(b), Some(_)) => Some(before_exception(b)),
            (b, _) => b.map(str::to_string),
        };
        let t = resolve_name(name, base_body.as_deref());
        out_words.push(t.spdx.clone());
        let known_exception = !with_words.is_empty() && {
            let (b, _) = names::translate_name(name);
            names::translate_line(&format!("{b} with {}", with_words.join(" ")))
                .is_ok_and(|x| x.unknown_names.is_empty())
        };
        if known_exception {
            out_words.push("with".into());
            out_words.extend(with_words.iter().map(|s| s.to_string()));
        } else if let Some(exc) = text_exc.first() {
            out_words.push("with".into());
            out_words.push((*exc).to_string());
            terms.push(TermEvidence {
                name: whole.clone(),
                spdx: format!("WITH {exc}"),
                how: "exception recognized by its text".into(),
                weak: false,
            });
        } else if !with_words.is_empty() {
            out_words.push("with".into());
            out_words.extend(with_words.iter().map(|s| s.to_string()));
        }
        terms.push(t);
        i = j;
    }
    let rebuilt = out_words.join(" ").replace(" , ", ", ");
    let t = names::translate_line(&rebuilt).map_err(|e| names::NameError {
        line: line.to_string(),
        reason: e.reason,
    })?;
    let mut unknown_names = t.unknown_names;
    unknown_names.extend(
        terms
            .iter()
            .filter(|t| t.how.starts_with("unknown name"))
            .map(|t| t.name.clone()),
    );
    Ok(ResolvedLine {
        expression: t.expression,
        unknown_names,
        terms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_version_from_text() {
        let body = "This program is free software: you can redistribute it and/or modify it under the terms of the GNU Lesser General Public License as published by the Free Software Foundation, either version 2.1 of the License, or (at your option) any later version.";
        let r = resolve_line("LGPL-2+", &|_| Some(body)).unwrap();
        assert_eq!(r.expression, "LGPL-2.1-or-later");
        let r = resolve_line("GPL-2+", &|_| None).unwrap();
        assert_eq!(r.expression, "GPL-2.0-or-later");
    }

    #[test]
    fn public_domain_text_and_unknown_names() {
        let r = resolve_line("PD-md4", &|_| {
            Some("This code is in the public domain; do with it what you wish.")
        })
        .unwrap();
        assert_eq!(r.expression, "LicenseRef-public-domain");
        let r = resolve_line("Weird", &|_| None).unwrap();
        assert_eq!(r.unknown_names, vec!["Weird".to_string()]);
        // An unknown name whose text is a short grant notice is read by it.
        let r = resolve_line("Apache", &|_| {
            Some("Licensed under the Apache License, Version 2.0 (the \"License\");\nyou may not use this software except in compliance with the License.")
        })
        .unwrap();
        assert_eq!(r.expression, "Apache-2.0");
        assert!(r.unknown_names.is_empty());
        // Two grants decide nothing: the name stays unknown.
        let r = resolve_line("Mixed", &|_| {
            Some("Licensed under the Apache License, Version 2.0, or: Permission is hereby granted, free of charge, to any person obtaining a copy of this software.")
        })
        .unwrap();
        assert_eq!(r.unknown_names, vec!["Mixed".to_string()]);
    }
}
