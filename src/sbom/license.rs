//! License detection for one Debian binary package.
//!
//! Reads `usr/share/doc/<pkg>/copyright` from the `.deb` (following a
//! symlinked doc directory or copyright file into the package that owns the
//! target), then:
//!
//! * DEP-5 files: keeps the `Files:` stanzas whose files end up in the binary
//!   package and translates their `License:` lines ([`crate::sbom::names`]).
//!   Generic rules drop stanzas that only cover Debian packaging (`debian/*`),
//!   test suites, examples not installed, texinfo sources when no info manual
//!   is shipped, and autotools build machinery; a package that ships nothing
//!   but `/usr/share/doc` keeps only its umbrella `Files: *` stanza. Per-source
//!   decisions in [`crate::sbom::curated`] override the generic rules.
//! * prose files: a curated rule for the source package when its evidence is
//!   still in the text, else license grants recognized in the text
//!   ([`crate::sbom::text`]) with a review flag; nothing recognized gives
//!   `NOASSERTION`.
//!
//! Every expression is validated with the `spdx` crate in strict mode
//! (`LicenseRef-*` allowed) and normalized: nested `AND`/`OR` flattened and
//! duplicate operands removed.

use crate::deb::{self, DataFile, DebError, Limits};
use crate::sbom::scan::Scan;
use crate::sbom::{dep5, text};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How a license was determined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DetectionMethod {
    /// From the `Files:` stanzas of a DEP-5 copyright file.
    Dep5,
    /// Recognized from license grants in a prose copyright file.
    Text,
    /// From the curated table (with its reason).
    Curated {
        /// Why the curated expression applies.
        reason: String,
    },
    /// Not determined.
    Unknown,
}

impl DetectionMethod {
    /// Short label for reports.
    pub fn label(&self) -> &'static str {
        match self {
            DetectionMethod::Dep5 => "dep5",
            DetectionMethod::Text => "text",
            DetectionMethod::Curated { .. } => "curated",
            DetectionMethod::Unknown => "unknown",
        }
    }
}

/// Something a person should look at before the license record is trusted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum ReviewFlag {
    /// No license could be determined (NOASSERTION).
    UnknownLicense,
    /// A license name that is not in the translation table (became a `LicenseRef-`).
    UnknownLicenseName(String),
    /// A curated entry applies but is marked as partial / low confidence.
    CuratedNeedsReview,
    /// A curated entry exists but its evidence is no longer in the file.
    CuratedEvidenceMissing,
    /// The expression claims public domain (no license grant).
    PublicDomainClaim,
    /// The package is from a `non-free`/`contrib` section.
    NonFreeSection(String),
    /// No copyright file in the package (or the symlink target is unavailable).
    NoCopyrightFile,
    /// A referenced `/usr/share/common-licenses` text was not found.
    CommonLicenseMissing(String),
    /// A license identified by a weak text match (below the strong score).
    WeakTextMatch(String),
    /// Terms that only a stanza kept by default brings in (copyleft, or
    /// individual top-level files).
    KeptByDefault(String),
    /// A dropped `debian/*` stanza with other terms, while the package ships
    /// scripts that may come from `debian/`.
    DebianFilesMayShip(String),
}

impl ReviewFlag {
    /// One line per flag kind, for the legend of every report.
    pub const LEGEND: &'static [(&'static str, &'static str)] = &[
        (
            "unknown-license",
            "no license could be determined (NOASSERTION): read the copyright file",
        ),
        (
            "unknown-license-name",
            "a license name neither translated nor recognized by its text (became a LicenseRef-)",
        ),
        (
            "weak-text-match",
            "a license identified by a text match below 0.90: compare the text with the SPDX license",
        ),
        (
            "kept-by-default",
            "copyleft terms, or the terms of individual top-level files, come only from a stanza that no evidence showed to be shipped: check whether those files are built into the package",
        ),
        (
            "debian-files-may-ship",
            "a debian/* stanza with other terms was dropped, but the package ships scripts that may come from debian/",
        ),
        (
            "public-domain-claim",
            "the package rests on a public-domain statement alone: no license grant to rely on",
        ),
        (
            "non-free-section",
            "the package is from non-free or contrib",
        ),
        (
            "curated-needs-review",
            "a curated rule applies that is marked partial",
        ),
        (
            "curated-evidence-missing",
            "a curated rule exists but its evidence is no longer in the copyright file",
        ),
        ("no-copyright-file", "the package has no copyright file"),
        (
            "common-license-missing",
            "a referenced /usr/share/common-licenses text is not in the build",
        ),
    ];
}

impl std::fmt::Display for ReviewFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReviewFlag::UnknownLicense => f.write_str("unknown-license"),
            ReviewFlag::UnknownLicenseName(n) => write!(f, "unknown-license-name:{n}"),
            ReviewFlag::CuratedNeedsReview => f.write_str("curated-needs-review"),
            ReviewFlag::CuratedEvidenceMissing => f.write_str("curated-evidence-missing"),
            ReviewFlag::PublicDomainClaim => f.write_str("public-domain-claim"),
            ReviewFlag::NonFreeSection(s) => write!(f, "non-free-section:{s}"),
            ReviewFlag::NoCopyrightFile => f.write_str("no-copyright-file"),
            ReviewFlag::CommonLicenseMissing(n) => write!(f, "common-license-missing:{n}"),
            ReviewFlag::WeakTextMatch(n) => write!(f, "weak-text-match:{n}"),
            ReviewFlag::KeptByDefault(n) => write!(f, "kept-by-default:{n}"),
            ReviewFlag::DebianFilesMayShip(n) => write!(f, "debian-files-may-ship:{n}"),
        }
    }
}

/// How sure the engine is of an expression.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Confidence {
    /// Weak text matches, unknown names or no license.
    Low,
    /// Prose read by grant sentences, or stanzas kept by default.
    Medium,
    /// Every kept part shown by a rule or a strong match; nothing flagged.
    High,
}

impl Confidence {
    /// Label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// Why one stanza (or prose grant) was kept or dropped, and what it gave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StanzaEvidence {
    /// `Files: a b`, `paragraph 3`, `inventory: …`, `curated rule …`.
    pub scope: String,
    /// The license as written (short name or recognized id).
    pub label: String,
    /// The SPDX expression it contributed (None when dropped).
    pub expression: Option<String>,
    /// Kept or dropped.
    pub kept: bool,
    /// Why.
    pub reason: String,
    /// Kept only because nothing showed it is left out.
    pub by_default: bool,
    /// How each license name was identified (text span, match score).
    pub how: Vec<String>,
}

/// The license record of one binary package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LicenseFinding {
    /// SPDX expression; `None` means NOASSERTION.
    pub expression: Option<String>,
    /// How it was found.
    pub method: DetectionMethod,
    /// `(package owning the copyright file, "link -> target")` when a symlink
    /// was followed.
    pub followed_symlink: Option<(String, String)>,
    /// The copyright file, verbatim.
    pub copyright_text: Option<Vec<u8>>,
    /// `/usr/share/common-licenses/<Name>` files the copyright file points to.
    pub common_licenses_referenced: Vec<String>,
    /// Review flags, sorted.
    pub flags: Vec<ReviewFlag>,
    /// Whether the copyright file is machine-readable.
    pub dep5: bool,
    /// What was decided and why (dropped stanzas, or-later upgrades, …).
    pub notes: Vec<String>,
    /// Per stanza / grant evidence.
    pub stanzas: Vec<StanzaEvidence>,
    /// How sure the engine is.
    pub confidence: Confidence,
}

/// Errors of license detection (only I/O and malformed packages: an
/// unreadable license is a [`ReviewFlag`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    /// A package could not be read.
    #[error("reading the copyright file of package {package}: {source}")]
    Deb {
        /// The package whose file was read.
        package: String,
        /// What failed.
        #[source]
        source: DebError,
    },
}

// ---------------------------------------------------------------------------
// Expressions

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Leaf(String),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn render(&self, top: bool) -> String {
        match self {
            Node::Leaf(s) => s.clone(),
            Node::And(v) | Node::Or(v) => {
                let op = if matches!(self, Node::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let s = v
                    .iter()
                    .map(|n| n.render(false))
                    .collect::<Vec<_>>()
                    .join(op);
                if top { s } else { format!("({s})") }
            }
        }
    }
    fn sort(&mut self) {
        if let Node::And(v) | Node::Or(v) = self {
            v.iter_mut().for_each(Node::sort);
            v.sort_by_key(|n| n.render(false));
        }
    }
}

fn combine(a: Node, b: Node, and: bool) -> Node {
    let mut items = Vec::new();
    for n in [a, b] {
        match (n, and) {
            (Node::And(v), true) | (Node::Or(v), false) => items.extend(v),
            (n, _) => items.push(n),
        }
    }
    let mut dedup: Vec<Node> = Vec::new();
    for n in items {
        if !dedup.contains(&n) {
            dedup.push(n);
        }
    }
    if dedup.len() == 1 {
        return dedup.remove(0);
    }
    if and {
        Node::And(dedup)
    } else {
        Node::Or(dedup)
    }
}

fn parse_tree(s: &str) -> Result<Node, String> {
    let e = spdx::Expression::parse_mode(s, spdx::ParseMode::STRICT)
        .map_err(|e| format!("invalid SPDX expression {s:?}: {e}"))?;
    let mut stack: Vec<Node> = Vec::new();
    for node in e.iter() {
        match node {
            spdx::expression::ExprNode::Req(r) => stack.push(Node::Leaf(r.req.to_string())),
            spdx::expression::ExprNode::Op(op) => {
                let b = stack.pop().ok_or("malformed expression")?;
                let a = stack.pop().ok_or("malformed expression")?;
                stack.push(combine(a, b, matches!(op, spdx::expression::Operator::And)));
            }
        }
    }
    if stack.len() != 1 {
        return Err(format!("malformed expression {s:?}"));
    }
    Ok(stack.remove(0))
}

/// Validate `s` strictly and normalize it: nested same-operator groups
/// flattened, duplicate operands dropped (first appearance order kept).
pub fn canonical_expression(s: &str) -> Result<String, String> {
    Ok(parse_tree(s)?.render(true))
}

/// The expression with every license term (`ID` or `ID WITH EXCEPTION`)
/// replaced by `f(term)`; the structure is kept.
pub fn map_terms(s: &str, f: &dyn Fn(&str) -> String) -> Result<String, String> {
    fn walk(n: Node, f: &dyn Fn(&str) -> String) -> Node {
        match n {
            Node::Leaf(t) => Node::Leaf(f(&t)),
            Node::And(v) => Node::And(v.into_iter().map(|c| walk(c, f)).collect()),
            Node::Or(v) => Node::Or(v.into_iter().map(|c| walk(c, f)).collect()),
        }
    }
    Ok(walk(parse_tree(s)?, f).render(true))
}

/// Like [`canonical_expression`], with operands sorted: two expressions are
/// equal up to operand order iff these strings are equal.
pub fn comparable_expression(s: &str) -> Result<String, String> {
    let mut t = parse_tree(s)?;
    t.sort();
    Ok(t.render(true))
}

/// License ids (with `WITH` additions) in an expression.
pub fn expression_terms(s: &str) -> Vec<String> {
    fn walk(n: &Node, out: &mut Vec<String>) {
        match n {
            Node::Leaf(s) => out.push(s.clone()),
            Node::And(v) | Node::Or(v) => v.iter().for_each(|c| walk(c, out)),
        }
    }
    let mut out = Vec::new();
    if let Ok(t) = parse_tree(s) {
        walk(&t, &mut out);
    }
    out
}

/// True when a term of the expression carries a copyleft license that obliges
/// distributors to offer the corresponding source (GPL, LGPL, AGPL, MPL, EPL,
/// CDDL, EUPL, …).
pub fn requires_source_offer(expr: &str) -> bool {
    expression_terms(expr).iter().any(|t| {
        let id = t.split(' ').next().unwrap_or("");
        [
            "GPL-", "LGPL-", "AGPL-", "MPL-", "EPL-", "CDDL-", "EUPL-", "OSL-", "CPL-", "APSL-",
        ]
        .iter()
        .any(|p| id.starts_with(p))
    })
}

/// True when a term is a copyleft license (the source-offer ones plus GFDL).
pub fn is_copyleft(expr: &str) -> bool {
    requires_source_offer(expr)
        || expression_terms(expr)
            .iter()
            .any(|t| t.starts_with("GFDL-"))
}

pub(crate) fn and_all(parts: &[String]) -> Option<String> {
    if parts.is_empty() {
        return None;
    }
    let joined = parts
        .iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(" AND ");
    canonical_expression(&joined).ok()
}

pub use crate::sbom::applies::PackageEvidence;
pub use crate::sbom::evaluate::{Evaluation, evaluate_dep5};
pub use crate::sbom::prose::evaluate_prose;

/// The evidence a package is evaluated with (kept under its old name).
pub type Shipped = PackageEvidence;

// ---------------------------------------------------------------------------
// Reading packages

fn scan(package: &str, deb: &Path, doc: &str, limits: &Limits) -> Result<Scan, LicenseError> {
    crate::sbom::scan::scan(deb, doc, limits).map_err(|source| LicenseError::Deb {
        package: package.to_string(),
        source,
    })
}

/// Resolve a symlink target relative to the directory holding the link.
fn resolve(link_dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        link_dir.split('/').filter(|s| !s.is_empty()).collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// The doc directory name in `usr/share/doc/<name>/…`.
fn doc_name(path: &str) -> Option<&str> {
    path.strip_prefix("usr/share/doc/")?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

/// Detect the license of binary `package` (built from `source`, in archive
/// `section`) from its `.deb`. `available` maps package names to `.deb`
/// files, for following symlinked doc directories.
pub fn detect(
    package: &str,
    source: &str,
    section: Option<&str>,
    deb: &Path,
    available: &BTreeMap<String, PathBuf>,
    limits: &Limits,
) -> Result<LicenseFinding, LicenseError> {
    detect_with(
        package,
        source,
        section,
        deb,
        available,
        limits,
        &BTreeSet::new(),
    )
}

/// [`detect`], knowing the other binary packages built from the same source
/// (`siblings`), so that code compiled into a sibling's shared library is
/// attributed to it.
pub fn detect_with(
    package: &str,
    source: &str,
    section: Option<&str>,
    deb: &Path,
    available: &BTreeMap<String, PathBuf>,
    limits: &Limits,
    siblings: &BTreeSet<String>,
) -> Result<LicenseFinding, LicenseError> {
    let first = scan(package, deb, package, limits)?;
    let mut shipped = first.evidence.clone();
    shipped.package = package.to_string();
    shipped.siblings = siblings.iter().filter(|s| *s != package).cloned().collect();
    let mut flags = Vec::new();
    let mut notes = Vec::new();
    let mut followed: Option<(String, String)> = None;
    let mut bytes: Option<Vec<u8>> = None;
    let mut cur = first;
    let mut cur_pkg = package.to_string();
    let mut cur_doc = package.to_string();
    for _hop in 0..6 {
        if let Some(DataFile::File(b)) = &cur.copyright {
            bytes = Some(b.clone());
            break;
        }
        let (link_dir, link, target) = match (&cur.dir, &cur.copyright) {
            (Some(DataFile::Symlink(t)), _) => (
                "usr/share/doc".to_string(),
                format!("usr/share/doc/{cur_doc}"),
                t.clone(),
            ),
            (_, Some(DataFile::Symlink(t))) => (
                format!("usr/share/doc/{cur_doc}"),
                format!("usr/share/doc/{cur_doc}/copyright"),
                t.clone(),
            ),
            _ => break,
        };
        let resolved = resolve(&link_dir, &target);
        let Some(next_doc) = doc_name(&resolved).map(str::to_string) else {
            notes.push(format!("{link} -> {target} leaves /usr/share/doc"));
            break;
        };
        // By Debian convention /usr/share/doc/<name> belongs to package <name>.
        let (next_pkg, next_deb) = if next_doc == cur_doc {
            (cur_pkg.clone(), None)
        } else {
            match available.get(&next_doc) {
                Some(p) => (next_doc.clone(), Some(p.clone())),
                None => {
                    notes.push(format!(
                        "{link} -> {target}: package {next_doc} is not available"
                    ));
                    followed = Some((next_doc.clone(), format!("{link} -> {target}")));
                    break;
                }
            }
        };
        followed = Some((next_pkg.clone(), format!("{link} -> {target}")));
        let deb_path = next_deb.unwrap_or_else(|| {
            available
                .get(&cur_pkg)
                .cloned()
                .unwrap_or(deb.to_path_buf())
        });
        cur = scan(&next_pkg, &deb_path, &next_doc, limits)?;
        cur_pkg = next_pkg;
        cur_doc = next_doc;
    }
    if let Some(sec) = section {
        let area = sec.split('/').next().unwrap_or("");
        if sec.contains('/')
            && (area == "non-free" || area == "contrib" || area == "non-free-firmware")
        {
            flags.push(ReviewFlag::NonFreeSection(sec.to_string()));
        }
    }
    let Some(bytes) = bytes else {
        flags.push(ReviewFlag::NoCopyrightFile);
        flags.push(ReviewFlag::UnknownLicense);
        flags.sort();
        flags.dedup();
        return Ok(LicenseFinding {
            expression: None,
            method: DetectionMethod::Unknown,
            followed_symlink: followed,
            copyright_text: None,
            common_licenses_referenced: Vec::new(),
            flags,
            dep5: false,
            notes,
            stanzas: Vec::new(),
            confidence: Confidence::Low,
        });
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let is_dep5 = dep5::is_dep5(&text);
    let ev = if is_dep5 {
        evaluate_dep5(&text, source, &shipped)
    } else {
        evaluate_prose(&text, package, source, &shipped)
    };
    flags.extend(ev.flags);
    notes.extend(ev.notes);
    // Public domain is a risk when the package rests on it alone: no
    // license grant covers the main code.
    if ev.expression.as_deref() == Some("LicenseRef-public-domain") {
        flags.push(ReviewFlag::PublicDomainClaim);
    }
    flags.sort();
    flags.dedup();
    Ok(LicenseFinding {
        expression: ev.expression,
        method: ev.method,
        followed_symlink: followed,
        common_licenses_referenced: text::common_licenses(&text),
        copyright_text: Some(bytes),
        flags,
        dep5: is_dep5,
        notes,
        stanzas: ev.stanzas,
        confidence: ev.confidence,
    })
}

/// [`detect`] for a `.deb`, reading its name, source and section from its
/// control file.
pub fn detect_deb(
    deb: &Path,
    available: &BTreeMap<String, PathBuf>,
) -> Result<LicenseFinding, LicenseError> {
    let limits = Limits::default();
    let control = deb::read_control(deb, &limits).map_err(|source| LicenseError::Deb {
        package: deb.display().to_string(),
        source,
    })?;
    let package = control.get("Package").unwrap_or_default().to_string();
    let source = control
        .get("Source")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or(&package)
        .to_string();
    detect(
        &package,
        &source,
        control.get("Section"),
        deb,
        available,
        &limits,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_flattens_and_dedups() {
        assert_eq!(
            canonical_expression("(MIT AND (MIT AND Zlib)) AND ISC").unwrap(),
            "MIT AND Zlib AND ISC"
        );
        assert_eq!(comparable_expression("Zlib OR MIT").unwrap(), "MIT OR Zlib");
        assert!(canonical_expression("GPL-2.0").is_err());
        assert!(canonical_expression("LicenseRef-public-domain AND MIT").is_ok());
        assert_eq!(
            canonical_expression("GPL-3.0-or-later WITH GCC-exception-3.1").unwrap(),
            "GPL-3.0-or-later WITH GCC-exception-3.1"
        );
    }

    #[test]
    fn resolve_links() {
        assert_eq!(
            resolve("usr/share/doc", "gcc-12-base"),
            "usr/share/doc/gcc-12-base"
        );
        assert_eq!(
            resolve("usr/share/doc/a", "../b/copyright"),
            "usr/share/doc/b/copyright"
        );
    }
}
