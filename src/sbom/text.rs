//! License grants recognized in free-form (non-DEP-5) copyright files.
//!
//! About a third of Debian packages still ship prose copyright files. This
//! module looks for the sentences that actually grant a license, not for
//! mentions of license names:
//!
//! * GNU grants: "under the terms of the GNU (Lesser|Library) General Public
//!   License … version N" — "or (at your option) any later version" / "or
//!   later" makes it `-or-later`; "version 2 dated June, 1991" or nothing makes
//!   it `-only`. A bare path to `/usr/share/common-licenses/GPL-2` is *not* a
//!   grant (it names where a text lives, not which versions apply).
//! * the Python license stack (PSF License Version 2 … CWI) → `Python-2.0`;
//! * Apache 2.0, MIT ("Permission is hereby granted, free of charge"),
//!   BSD (2/3/4 clause by the clauses present), zlib, public domain.
//!
//! Also lists the `/usr/share/common-licenses/<Name>` files a copyright file
//! points to, so their texts can be shipped as attribution.

use regex::Regex;
use std::sync::LazyLock;

/// Lowercase, with every run of whitespace (and comment stars) collapsed to
/// one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_whitespace() || c == '*' || c == '#' {
            if !space {
                out.push(' ');
                space = true;
            }
        } else {
            out.push(c);
            space = false;
        }
    }
    out.trim_end().to_string()
}

static GNU_GRANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:under the terms of (?:either )?the|license(?: for \S+)? is the|^- the) gnu (lesser |library |affero )?general public license(?: \(\w+\))?(?:,? as published by the free software foundation)?[;,:]? \(?(?:either )?(?:version|v) ?(\d(?:\.\d)?)([^.]|\.\d){0,160}",
    )
    .expect("valid regex")
});
static LATER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(any later version|or later|or newer|any newer version)").expect("valid regex")
});
static COMMON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"/usr/share/common-licenses/([A-Za-z0-9][A-Za-z0-9.+_-]*)").expect("valid regex")
});

/// A license found in the text, with the words that showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// SPDX term.
    pub expression: String,
    /// The matched text (normalized).
    pub evidence: String,
    /// Byte offset of the match in the normalized text.
    pub start: usize,
}

static GFDL_GRANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"gnu free documentation license,? (?:version|v) ?(1\.[123])((?:[^.]|\.\d){0,200})")
        .expect("valid regex")
});
static POINTER_GRANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:licensed|released|distributed|available) under (?:the terms of )?(?:the )?(?:license (?:found |given )?in )?[`'\x22]?/usr/share/common-licenses/((?:l|a)?gpl)-(\d(?:\.\d)?)([^.]{0,60})")
        .expect("valid regex")
});

/// The largest char boundary of `t` at or below `i`.
fn floor_boundary(t: &str, mut i: usize) -> usize {
    i = i.min(t.len());
    while !t.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn gfdl_grants(t: &str, found: &mut Vec<(usize, Grant)>) {
    for m in GFDL_GRANT.captures_iter(t) {
        let Some(whole) = m.get(0) else { continue };
        let ver = m.get(1).map(|v| v.as_str()).unwrap_or("1.3");
        let tail = m.get(2).map(|v| v.as_str()).unwrap_or("");
        let later = tail.contains("or any later version") || tail.starts_with(" or later");
        let niv = tail.contains("no invariant sections");
        let id = format!(
            "GFDL-{ver}{}-{}",
            if niv { "-no-invariants" } else { "" },
            if later { "or-later" } else { "only" }
        );
        found.push((
            whole.start(),
            Grant {
                expression: id,
                evidence: whole.as_str().to_string(),
                start: whole.start(),
            },
        ));
    }
}

/// "distributed under /usr/share/common-licenses/GPL-3 (or later)": a
/// pointer used as the grant itself. A pointer in a "the complete text can
/// be found in" sentence is not a grant and does not match.
fn pointer_grants(t: &str, found: &mut Vec<(usize, Grant)>) {
    for m in POINTER_GRANT.captures_iter(t) {
        let Some(whole) = m.get(0) else { continue };
        let kind = m.get(1).map(|k| k.as_str()).unwrap_or("");
        let ver = m.get(2).map(|v| v.as_str()).unwrap_or("");
        let tail = m.get(3).map(|v| v.as_str()).unwrap_or("");
        let base = match (kind, ver) {
            ("gpl", "1") => "GPL-1.0",
            ("gpl", "2") => "GPL-2.0",
            ("gpl", "3") => "GPL-3.0",
            ("lgpl", "2") => "LGPL-2.0",
            ("lgpl", "2.1") => "LGPL-2.1",
            ("lgpl", "3") => "LGPL-3.0",
            ("agpl", "3") => "AGPL-3.0",
            _ => continue,
        };
        let later = LATER.is_match(tail);
        found.push((
            whole.start(),
            Grant {
                expression: format!("{base}-{}", if later { "or-later" } else { "only" }),
                evidence: whole.as_str().to_string(),
                start: whole.start(),
            },
        ));
    }
}

/// GNU (GPL/LGPL/AGPL/GFDL) grant sentences in `text`, including a
/// `/usr/share/common-licenses` pointer used as the grant, in order.
pub fn gnu_grants(text: &str) -> Vec<Grant> {
    let t = normalize(text);
    let mut found = Vec::new();
    gnu_grants_in(&t, &mut found);
    found.sort_by_key(|(p, _)| *p);
    found.into_iter().map(|(_, g)| g).collect()
}

/// Grants recognized in `text`, in order of first appearance, deduplicated.
pub fn grants(text: &str) -> Vec<Grant> {
    let t = normalize(text);
    let mut found: Vec<(usize, Grant)> = Vec::new();
    gnu_grants_in(&t, &mut found);
    simple_and_bsd(&t, &mut found);
    found.sort_by_key(|(p, _)| *p);
    let mut out: Vec<Grant> = Vec::new();
    for (_, g) in found {
        if !out.iter().any(|o| o.expression == g.expression) {
            out.push(g);
        }
    }
    out
}

/// The one license a short notice grants ("Licensed under the Apache
/// License, Version 2.0", a BSD clause block under a project's own name),
/// for a text the identifier does not know as a whole license text: an
/// unknown DEP-5 name (`Apache`, `Go`, `Medusa`) or a prose paragraph is
/// then read by what it says. Several grants (a choice, or parts) decide
/// nothing here.
pub fn single_grant(text: &str) -> Option<Grant> {
    match grants(text).as_slice() {
        [g] => Some(g.clone()),
        _ => None,
    }
}

fn gnu_grants_in(t: &str, found: &mut Vec<(usize, Grant)>) {
    for m in GNU_GRANT.captures_iter(t) {
        let Some(whole) = m.get(0) else { continue };
        let kind = m.get(1).map(|k| k.as_str().trim()).unwrap_or("");
        let ver = m.get(2).map(|v| v.as_str()).unwrap_or("");
        let tail = whole.as_str();
        let later = LATER.is_match(tail) && !tail.contains("dated june, 1991");
        let base = match (kind, ver) {
            ("", "1") => "GPL-1.0",
            ("", "2") => "GPL-2.0",
            ("", "3") => "GPL-3.0",
            ("lesser" | "library", "2") => "LGPL-2.0",
            ("lesser" | "library", "2.1") => "LGPL-2.1",
            ("lesser" | "library", "3") => "LGPL-3.0",
            ("affero", "3") => "AGPL-3.0",
            _ => continue,
        };
        let id = format!("{base}-{}", if later { "or-later" } else { "only" });
        found.push((
            whole.start(),
            Grant {
                expression: id,
                evidence: tail.to_string(),
                start: whole.start(),
            },
        ));
    }
    gfdl_grants(t, found);
    if !found
        .iter()
        .any(|(_, g)| !g.expression.starts_with("GFDL-"))
    {
        pointer_grants(t, found);
    }
}

fn simple_and_bsd(t: &str, found: &mut Vec<(usize, Grant)>) {
    let simple: &[(&str, &str)] = &[
        ("python software foundation license version 2", "Python-2.0"),
        ("apache license, version 2.0", "Apache-2.0"),
        ("apache license version 2.0", "Apache-2.0"),
        (
            "permission is hereby granted, free of charge, to any person obtaining a copy",
            "MIT",
        ),
        (
            "altered source versions must be plainly marked as such",
            "Zlib",
        ),
        ("is in the public domain", "LicenseRef-public-domain"),
        (
            "permission to use, copy, modify, and distribute this software and its documentation for any purpose and without fee is hereby granted",
            "HPND",
        ),
        ("placed in the public domain", "LicenseRef-public-domain"),
    ];
    for (needle, id) in simple {
        if let Some(pos) = t.find(needle) {
            found.push((
                pos,
                Grant {
                    expression: (*id).to_string(),
                    evidence: (*needle).to_string(),
                    start: pos,
                },
            ));
        }
    }
    // BSD: classify each "redistribution and use" block by its clauses.
    let needle = "redistribution and use in source and binary forms";
    let starts: Vec<usize> = t.match_indices(needle).map(|(i, _)| i).collect();
    for (k, &s) in starts.iter().enumerate() {
        // `s + 2500` may fall inside a multi-byte character: round down.
        let end = floor_boundary(
            t,
            starts.get(k + 1).copied().unwrap_or(t.len()).min(s + 2500),
        );
        let block = &t[s..end];
        let id = if block.contains("all advertising materials") {
            "BSD-4-Clause"
        } else if block.contains("neither the name") || block.contains("may be used to endorse") {
            "BSD-3-Clause"
        } else {
            "BSD-2-Clause"
        };
        found.push((
            s,
            Grant {
                expression: id.to_string(),
                evidence: needle.to_string(),
                start: s,
            },
        ));
    }
}

/// Names of `/usr/share/common-licenses/<Name>` files referenced, sorted,
/// deduplicated (trailing punctuation trimmed).
pub fn common_licenses(text: &str) -> Vec<String> {
    let mut v: Vec<String> = COMMON
        .captures_iter(text)
        .filter_map(|c| c.get(1))
        .map(|m| {
            m.as_str()
                .trim_end_matches(['.', ',', '\'', '"', ')', '`', '-'])
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_grants() {
        let g = grants(
            "it under the terms of the GNU General Public License as published by\n the Free Software Foundation; either version 2 of the License, or\n (at your option) any later version.",
        );
        assert_eq!(g[0].expression, "GPL-2.0-or-later");
        let g = grants(
            "under the terms of the GNU General Public License as published by the Free Software Foundation; version 2 dated June, 1991.",
        );
        assert_eq!(g[0].expression, "GPL-2.0-only");
        assert!(grants("see /usr/share/common-licenses/GPL-2").is_empty());
        let g = grants(
            "The overall license for libxcrypt is the GNU Lesser General Public\nLicense, version 2.1 (or, at your option, any later version); see",
        );
        assert_eq!(g[0].expression, "LGPL-2.1-or-later");
        let g = grants(
            "under the terms of the GNU Lesser General Public License (either version 3\nof the License, or, at your option, any later version).",
        );
        assert_eq!(g[0].expression, "LGPL-3.0-or-later");
    }

    #[test]
    fn bsd_block_cut_inside_a_multibyte_character() {
        // Regression (fuzz finding): the 2500-byte window of a BSD block
        // ended inside "é" and slicing panicked.
        for pad in 0..4 {
            let t = format!(
                "redistribution and use in source and binary forms{}{}",
                "x".repeat(2445 + pad),
                "é".repeat(8)
            );
            let g = grants(&t);
            assert_eq!(g.len(), 1, "{pad}");
            assert_eq!(g[0].expression, "BSD-2-Clause");
        }
    }

    #[test]
    fn gfdl_and_pointer_grants() {
        let g = grants(
            "Permission is granted to copy, distribute and/or modify this document under the terms of the GNU Free Documentation License, Version 1.3 or any later version published by the Free Software Foundation; with no Invariant Sections, no Front-Cover Texts, and no Back-Cover Texts.",
        );
        assert_eq!(g[0].expression, "GFDL-1.3-no-invariants-or-later");
        let g = grants(
            "This package is distributed under /usr/share/common-licenses/GPL-3, or (at your option) any later version.",
        );
        assert_eq!(g[0].expression, "GPL-3.0-or-later");
        let g = grants("It is licensed under `/usr/share/common-licenses/LGPL-2.1'.");
        assert_eq!(g[0].expression, "LGPL-2.1-only");
        assert!(
            grants("the complete text can be found in /usr/share/common-licenses/GPL-3.")
                .is_empty()
        );
    }

    #[test]
    fn common_license_paths() {
        assert_eq!(
            common_licenses(
                "in `/usr/share/common-licenses/GPL-2'. and /usr/share/common-licenses/LGPL-2.1."
            ),
            vec!["GPL-2", "LGPL-2.1"]
        );
    }
}
