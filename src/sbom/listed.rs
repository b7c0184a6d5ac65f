//! Which SPDX license ids the SBOMs write as ids, and what they write for
//! the others.
//!
//! The documents declare the license list they are written against (the
//! `spdx` crate's, [`list_version`]). Validators lag behind that list: an
//! id added recently (`BSD-3-Clause-Tso`) makes pyspdxtools 0.8.5 reject the
//! whole document. So an id is written as itself only when it is in the
//! crate's list, not deprecated, and not named in
//! `validator-unknown-ids.txt` (ids the pinned validators do not know yet);
//! any other term becomes `LicenseRef-<term>` with the license text, which
//! SPDX carries in `hasExtractedLicensingInfos` and CycloneDX as a named
//! license. The license reports keep the real id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// The written list of ids validators do not know yet.
const UNKNOWN_TO_VALIDATORS: &str = include_str!("validator-unknown-ids.txt");

/// The SPDX license list version the documents are written against
/// (`major.minor` of the `spdx` crate's list).
pub fn list_version() -> String {
    let v = spdx::license_version();
    let mut parts = v.trim_start_matches('v').split('.');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => v.to_string(),
    }
}

/// The ids of `validator-unknown-ids.txt`.
fn unknown_to_validators() -> &'static BTreeSet<&'static str> {
    static SET: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        UNKNOWN_TO_VALIDATORS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Whether a license id (without `+`) is written as itself.
pub fn license_is_written(id: &str) -> bool {
    spdx::license_id(id).is_some_and(|l| !l.is_deprecated())
        && !unknown_to_validators().contains(id)
}

/// Whether an exception id is written as itself.
pub fn exception_is_written(id: &str) -> bool {
    spdx::exception_id(id).is_some_and(|e| !e.is_deprecated())
        && !unknown_to_validators().contains(id)
}

/// A term written as a `LicenseRef-`: the id, the term it stands for and
/// the license text (with the exception's text after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub term: String,
    pub text: String,
}

/// `text` with every character an SPDX id may not hold (anything but
/// letters, digits, `.` and `-`) replaced by `-`.
pub fn id_safe(text: &str) -> String {
    text.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                true => c,
                false => '-',
            },
        )
        .collect()
}

/// The `LicenseRef-` of a term (`ID`, `ID+` or `ID WITH EXCEPTION`), or
/// `None` when the term is written as it is.
pub fn convert(term: &str) -> Option<(String, Converted)> {
    if term.starts_with("LicenseRef-") || term.starts_with("DocumentRef-") {
        return None;
    }
    let (lic, exc) = match term.split_once(" WITH ") {
        Some((l, e)) => (l.trim(), Some(e.trim())),
        None => (term.trim(), None),
    };
    let base = lic.trim_end_matches('+');
    if license_is_written(base) && exc.is_none_or(exception_is_written) {
        return None;
    }
    let name = term.replace(" WITH ", "-WITH-").replace('+', "-or-later");
    let safe = id_safe(&name);
    let mut text = spdx::license_id(base)
        .map(|l| l.text().to_string())
        .unwrap_or_default();
    if let Some(e) = exc.and_then(spdx::exception_id) {
        text.push_str("\n\n");
        text.push_str(e.text());
    }
    if text.trim().is_empty() {
        text = format!(
            "The license {term:?} of the SPDX license list {}.",
            list_version()
        );
    }
    let conv = Converted {
        term: term.to_string(),
        text,
    };
    Some((format!("LicenseRef-{safe}"), conv))
}

/// An expression as the SBOMs write it, and the `LicenseRef-`s it gained.
/// An expression that does not parse is returned unchanged.
pub fn expression(expr: &str) -> (String, BTreeMap<String, Converted>) {
    let mut refs = BTreeMap::new();
    let mut by_term = BTreeMap::new();
    for t in super::license::expression_terms(expr) {
        if let Some((id, c)) = convert(&t) {
            by_term.insert(t, id.clone());
            refs.insert(id, c);
        }
    }
    if refs.is_empty() {
        return (expr.to_string(), refs);
    }
    let lookup = |t: &str| by_term.get(t).cloned().unwrap_or_else(|| t.to_string());
    match super::license::map_terms(expr, &lookup) {
        Ok(written) => (written, refs),
        Err(_) => (expr.to_string(), BTreeMap::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_down_id_is_in_the_crates_list() {
        for id in unknown_to_validators() {
            assert!(
                spdx::license_id(id).is_some() || spdx::exception_id(id).is_some(),
                "validator-unknown-ids.txt names {id}, which the spdx crate's list {} does not have",
                list_version()
            );
        }
        assert!(unknown_to_validators().len() > 10);
    }

    #[test]
    fn unknown_ids_become_license_refs_with_their_text() {
        let (w, refs) = expression("BSD-3-Clause-Tso AND (MIT OR GPL-2.0-or-later)");
        assert_eq!(
            w,
            "LicenseRef-BSD-3-Clause-Tso AND (MIT OR GPL-2.0-or-later)"
        );
        let c = &refs["LicenseRef-BSD-3-Clause-Tso"];
        assert_eq!(c.term, "BSD-3-Clause-Tso");
        assert!(c.text.contains("Redistribution"), "{}", c.text);
        // An exception validators do not know takes its license with it.
        let (w, refs) = expression("GPL-2.0-only WITH rsync-linking-exception");
        assert_eq!(w, "LicenseRef-GPL-2.0-only-WITH-rsync-linking-exception");
        assert!(refs.values().all(|c| c.text.contains("GNU GENERAL PUBLIC")));
        // Known ids and existing LicenseRefs are left alone.
        let e = "GPL-3.0-or-later WITH GCC-exception-3.1 OR LicenseRef-public-domain";
        assert_eq!(expression(e), (e.to_string(), BTreeMap::new()));
    }

    #[test]
    fn deprecated_ids_are_not_written() {
        assert!(!license_is_written("GPL-2.0+"));
        assert!(!license_is_written("GPL-2.0"));
        assert!(license_is_written("GPL-2.0-or-later"));
        assert!(!license_is_written("BSD-3-Clause-Tso"));
        assert!(exception_is_written("GCC-exception-3.1"));
    }
}
