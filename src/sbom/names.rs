//! Debian short license names → SPDX identifiers, and `License:` lines → SPDX
//! expressions.
//!
//! Debian's DEP-5 short names (`GPL-2+`, `Expat`, `BSD-3-clause`, `Artistic`,
//! `public-domain`, `GPL-3+ with Bison exception`, …) are not SPDX ids. This
//! module owns the translation table; it never uses the `spdx` crate's
//! "imprecise" matching, which maps some of these names wrongly (e.g. it
//! reads `GPL-3+` or `BSD-3-clause` differently from Debian).
//!
//! The grammar of a DEP-5 `License:` first line: names joined by `or` and
//! `and`, where `and` binds tighter than `or`, and a comma ends a group (so
//! `A or B, and C` is `(A OR B) AND C`). A name may carry
//! `with <X> exception`.

use std::fmt::Write as _;

/// One translated license term: an SPDX expression fragment, plus a note when
/// the Debian name was not in the table and had to become a `LicenseRef-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// SPDX expression (valid under strict parsing).
    pub expression: String,
    /// Debian names that were not recognized (turned into `LicenseRef-…`).
    pub unknown_names: Vec<String>,
}

/// Error translating a `License:` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read license line {line:?}: {reason}")]
pub struct NameError {
    /// The line as found.
    pub line: String,
    /// What was wrong.
    pub reason: String,
}

/// Base Debian name (lowercase, without `+`) → (SPDX id for "only",
/// SPDX id for "or later"). `None` in the second slot means the license has
/// no "or later" form and a `+` is kept as the SPDX `+` operator.
const GNU_FAMILY: &[(&str, &str, &str)] = &[
    ("gpl", "GPL-1.0-only", "GPL-1.0-or-later"),
    ("gpl-1", "GPL-1.0-only", "GPL-1.0-or-later"),
    ("gpl-1.0", "GPL-1.0-only", "GPL-1.0-or-later"),
    ("gpl-2", "GPL-2.0-only", "GPL-2.0-or-later"),
    ("gpl-2.0", "GPL-2.0-only", "GPL-2.0-or-later"),
    ("gpl-3", "GPL-3.0-only", "GPL-3.0-or-later"),
    ("gpl-3.0", "GPL-3.0-only", "GPL-3.0-or-later"),
    ("lgpl", "LGPL-2.0-only", "LGPL-2.0-or-later"),
    ("lgpl-2", "LGPL-2.0-only", "LGPL-2.0-or-later"),
    ("lgpl-2.0", "LGPL-2.0-only", "LGPL-2.0-or-later"),
    ("lgpl-2.1", "LGPL-2.1-only", "LGPL-2.1-or-later"),
    ("lgpl-3", "LGPL-3.0-only", "LGPL-3.0-or-later"),
    ("lgpl-3.0", "LGPL-3.0-only", "LGPL-3.0-or-later"),
    ("agpl-3", "AGPL-3.0-only", "AGPL-3.0-or-later"),
    ("agpl-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later"),
    ("gfdl-1.1", "GFDL-1.1-only", "GFDL-1.1-or-later"),
    ("gfdl-1.2", "GFDL-1.2-only", "GFDL-1.2-or-later"),
    ("gfdl-1.3", "GFDL-1.3-only", "GFDL-1.3-or-later"),
    (
        "gfdl-niv-1.1",
        "GFDL-1.1-no-invariants-only",
        "GFDL-1.1-no-invariants-or-later",
    ),
    (
        "gfdl-niv-1.2",
        "GFDL-1.2-no-invariants-only",
        "GFDL-1.2-no-invariants-or-later",
    ),
    (
        "gfdl-niv-1.3",
        "GFDL-1.3-no-invariants-only",
        "GFDL-1.3-no-invariants-or-later",
    ),
    (
        "gfdl-niv",
        "GFDL-1.3-no-invariants-only",
        "GFDL-1.3-no-invariants-or-later",
    ),
];

/// Other Debian names (lowercase) → SPDX expression. Names that are already
/// SPDX ids (case-insensitively) need no entry.
const OTHER: &[(&str, &str)] = &[
    ("expat", "MIT"),
    ("mit", "MIT"),
    ("artistic", "Artistic-1.0-Perl"),
    ("artistic-1", "Artistic-1.0-Perl"),
    ("artistic-1.0", "Artistic-1.0-Perl"),
    ("artistic-2", "Artistic-2.0"),
    ("perl", "GPL-1.0-or-later OR Artistic-1.0-Perl"),
    ("public-domain", "LicenseRef-public-domain"),
    ("public_domain", "LicenseRef-public-domain"),
    ("pd", "LicenseRef-public-domain"),
    ("bsd-2", "BSD-2-Clause"),
    ("bsd-3", "BSD-3-Clause"),
    ("bsd-4", "BSD-4-Clause"),
    ("bsd-2-clause-freebsd", "BSD-2-Clause"),
    ("bsd-4-clause-uc", "BSD-4-Clause-UC"),
    ("apache-2", "Apache-2.0"),
    ("mpl-2", "MPL-2.0"),
    ("mpl-1.1", "MPL-1.1"),
    ("zlib", "Zlib"),
    ("zlib/libpng", "Zlib"),
    ("isc", "ISC"),
    ("cc0", "CC0-1.0"),
    ("psf-2", "PSF-2.0"),
    ("python", "Python-2.0"),
    ("openssl", "OpenSSL"),
    ("ssleay", "LicenseRef-SSLeay"),
    ("x11", "X11"),
    ("unicode", "Unicode-DFS-2016"),
    ("latex2e", "Latex2e"),
    ("fsfullr", "FSFULLR"),
    ("fsfap", "FSFAP"),
    ("fsful", "FSFUL"),
    ("bzip2", "bzip2-1.0.6"),
    ("curl", "curl"),
    ("ncsa", "NCSA"),
    ("sleepycat", "Sleepycat"),
];

/// `with <X> exception` → SPDX exception id. Keyed by the lowercase word(s)
/// between "with" and "exception"; the GNU licence version picks the id.
fn exception_id(words: &str, license: &str) -> Option<&'static str> {
    let gpl2 = license.starts_with("GPL-2.0") || license.starts_with("LGPL-2");
    Some(match words {
        "bison" => "Bison-exception-2.2",
        "gcc" | "gcc runtime library" | "gcc-runtime-library" => {
            if gpl2 {
                "GCC-exception-2.0"
            } else {
                "GCC-exception-3.1"
            }
        }
        "autoconf" => {
            if gpl2 {
                "Autoconf-exception-2.0"
            } else {
                "Autoconf-exception-3.0"
            }
        }
        "libtool" => "Libtool-exception",
        "texinfo" => "Texinfo-exception",
        "font" => "Font-exception-2.0",
        "classpath" => "Classpath-exception-2.0",
        "llvm" => "LLVM-exception",
        "u-boot" => "u-boot-exception-2.0",
        "linux-syscall-note" | "syscall" => "Linux-syscall-note",
        other => {
            // An SPDX exception id written as such (`PCRE2-exception`).
            return spdx::identifiers::EXCEPTIONS
                .iter()
                .find(|e| e.name.eq_ignore_ascii_case(other))
                .map(|e| e.name);
        }
    })
}

/// A non-deprecated SPDX license id matching `name` case-insensitively.
fn spdx_license_ci(name: &str) -> Option<&'static str> {
    spdx::identifiers::LICENSES
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
        .map(|l| l.name)
        .filter(|n| spdx::license_id(n).is_some_and(|id| !id.is_deprecated()))
}

/// Turn arbitrary text into the idstring of a `LicenseRef-` (letters,
/// digits, `.` and `-`).
pub fn license_ref(name: &str) -> String {
    let mut s = String::from("LicenseRef-");
    let mut last_dash = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            s.push(c);
            last_dash = false;
        } else if c == '+' {
            s.push_str("-or-later");
            last_dash = false;
        } else if !last_dash {
            s.push('-');
            last_dash = true;
        }
    }
    while s.ends_with('-') {
        s.pop();
    }
    if s == "LicenseRef" {
        s.push_str("-unnamed");
    }
    s
}

/// Translate one Debian short name (no operators; maybe a trailing `+`) into an
/// SPDX license term. Returns `(expression, recognized)`.
pub fn translate_name(name: &str) -> (String, bool) {
    let name = name.trim();
    if name.starts_with("LicenseRef-") && license_ref(&name["LicenseRef-".len()..]) == name {
        return (name.to_string(), true);
    }
    let lower = name.to_ascii_lowercase();
    let (base, plus) = match lower.strip_suffix('+') {
        Some(b) => (b, true),
        None => (lower.as_str(), false),
    };
    // Strip a trailing ".0" variant handled by the table, and SPDX-style
    // suffixes written by some maintainers.
    if let Some((_, only, later)) = GNU_FAMILY.iter().find(|(b, _, _)| *b == base) {
        return ((if plus { *later } else { *only }).to_string(), true);
    }
    if let Some((_, spdx)) = OTHER.iter().find(|(b, _)| *b == base) {
        let e = if plus && !spdx.contains(' ') && !spdx.starts_with("LicenseRef-") {
            format!("{spdx}+")
        } else {
            (*spdx).to_string()
        };
        return (e, true);
    }
    // BSD-3-clause and friends: SPDX spells "Clause".
    if let Some(id) = spdx_license_ci(base) {
        // Deprecated GNU bare ids (GPL-2.0 …) are in GNU_FAMILY; "GPL-2.0+"
        // style is also covered there. Anything else with `+` keeps it.
        let e = if plus {
            format!("{id}+")
        } else {
            id.to_string()
        };
        return (e, true);
    }
    (license_ref(name), false)
}

/// Translate a whole DEP-5 `License:` first line.
pub fn translate_line(line: &str) -> Result<Translated, NameError> {
    let err = |reason: &str| NameError {
        line: line.to_string(),
        reason: reason.to_string(),
    };
    let line = line.trim();
    if line.is_empty() {
        return Err(err("empty license line"));
    }
    let mut unknown = Vec::new();
    // Split into comma groups; each group after the first starts with
    // "and"/"or" which joins it to everything before.
    let mut out = String::new();
    for (i, group) in line.split(',').enumerate() {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut words: Vec<&str> = group.split_whitespace().collect();
        let mut joiner = "AND";
        if i > 0 {
            match words.first().map(|w| w.to_ascii_lowercase()) {
                Some(w) if w == "and" => {
                    words.remove(0);
                }
                Some(w) if w == "or" => {
                    joiner = "OR";
                    words.remove(0);
                }
                _ => {}
            }
        }
        let expr = translate_words(&words, &mut unknown).map_err(|r| err(&r))?;
        if out.is_empty() {
            out = expr;
        } else {
            out = format!("({out}) {joiner} ({expr})");
        }
    }
    if out.is_empty() {
        return Err(err("no license names"));
    }
    let expression = crate::sbom::license::canonical_expression(&out).map_err(|r| err(&r))?;
    Ok(Translated {
        expression,
        unknown_names: unknown,
    })
}

/// Words of one comma group → expression (with `and` binding tighter than
/// `or`, as the DEP-5 spec says).
fn translate_words(words: &[&str], unknown: &mut Vec<String>) -> Result<String, String> {
    // Split on "or" first, then "and", then parse "<name> [with <x> exception]".
    let mut ors: Vec<Vec<&str>> = vec![Vec::new()];
    for w in words {
        if w.eq_ignore_ascii_case("or") {
            ors.push(Vec::new());
        } else if let Some(last) = ors.last_mut() {
            last.push(w);
        }
    }
    let mut or_terms = Vec::new();
    for o in &ors {
        let mut ands: Vec<Vec<&str>> = vec![Vec::new()];
        for w in o {
            if w.eq_ignore_ascii_case("and") || *w == "&" {
                ands.push(Vec::new());
            } else if let Some(last) = ands.last_mut() {
                last.push(w);
            }
        }
        let mut and_terms = Vec::new();
        for a in &ands {
            if a.is_empty() {
                return Err("an operator has no license name beside it".into());
            }
            and_terms.push(translate_term(a, unknown));
        }
        let joined = and_terms
            .iter()
            .map(|t| paren_if_compound(t))
            .collect::<Vec<_>>()
            .join(" AND ");
        or_terms.push(joined);
    }
    Ok(or_terms
        .iter()
        .map(|t| paren_if_compound(t))
        .collect::<Vec<_>>()
        .join(" OR "))
}

fn paren_if_compound(t: &str) -> String {
    if t.contains(" AND ") || t.contains(" OR ") {
        format!("({t})")
    } else {
        t.to_string()
    }
}

/// `<name>` or `<name> with <x> exception` (words already split).
fn translate_term(words: &[&str], unknown: &mut Vec<String>) -> String {
    let with_pos = words.iter().position(|w| w.eq_ignore_ascii_case("with"));
    let name = match with_pos {
        Some(p) => words[..p].join(" "),
        None => words.join(" "),
    };
    // A multi-word "name" is prose, not a short name.
    let (base, ok) = if name.contains(' ') {
        (license_ref(&name), false)
    } else {
        translate_name(&name)
    };
    if !ok {
        unknown.push(name.clone());
    }
    let Some(p) = with_pos else {
        return base;
    };
    let mut exc: Vec<String> = words[p + 1..]
        .iter()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    if exc.last().is_some_and(|w| w == "exception") {
        exc.pop();
    }
    let exc_words = exc.join(" ");
    match exception_id(&exc_words, &base) {
        Some(id) if ok && !base.contains(' ') && !base.starts_with("LicenseRef-") => {
            format!("{base} WITH {id}")
        }
        _ => {
            // SPDX 2.3 has no user-defined exceptions: the whole term becomes
            // one LicenseRef.
            let full = words.join(" ");
            unknown.push(full.clone());
            let mut r = String::new();
            let _ = write!(r, "{}", license_ref(&full));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_names() {
        assert_eq!(translate_name("GPL-2+").0, "GPL-2.0-or-later");
        assert_eq!(translate_name("gpl-2").0, "GPL-2.0-only");
        assert_eq!(translate_name("GPL").0, "GPL-1.0-only");
        assert_eq!(translate_name("LGPL-2.1+").0, "LGPL-2.1-or-later");
        assert_eq!(
            translate_name("GFDL-NIV-1.3+").0,
            "GFDL-1.3-no-invariants-or-later"
        );
    }

    #[test]
    fn ref_idstring() {
        assert_eq!(license_ref("MIT-like"), "LicenseRef-MIT-like");
        assert_eq!(license_ref("foo bar+"), "LicenseRef-foo-bar-or-later");
    }
}
