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
use crate::sbom::{curated, dep5, names, text};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a license was determined.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReviewFlag {
    /// No license could be determined (NOASSERTION).
    UnknownLicense,
    /// A license name that is not in the translation table (became a `LicenseRef-`).
    UnknownLicenseName(String),
    /// Prose copyright file with no curated entry: recognized by text only.
    NonDep5Uncurated,
    /// A curated entry applies but is marked as partial / low confidence.
    CuratedNeedsReview,
    /// A curated entry exists but its evidence is no longer in the file.
    CuratedEvidenceMissing,
    /// The expression claims public domain (no license grant).
    PublicDomainClaim,
    /// The package is from a `non-free`/`contrib` section.
    NonFreeSection(String),
    /// The copyright file was reached through a symlink into another package.
    SymlinkedCopyright,
    /// No copyright file in the package (or the symlink target is unavailable).
    NoCopyrightFile,
    /// A referenced `/usr/share/common-licenses` text was not found.
    CommonLicenseMissing(String),
}

impl std::fmt::Display for ReviewFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReviewFlag::UnknownLicense => f.write_str("unknown-license"),
            ReviewFlag::UnknownLicenseName(n) => write!(f, "unknown-license-name:{n}"),
            ReviewFlag::NonDep5Uncurated => f.write_str("non-dep5-uncurated"),
            ReviewFlag::CuratedNeedsReview => f.write_str("curated-needs-review"),
            ReviewFlag::CuratedEvidenceMissing => f.write_str("curated-evidence-missing"),
            ReviewFlag::PublicDomainClaim => f.write_str("public-domain-claim"),
            ReviewFlag::NonFreeSection(s) => write!(f, "non-free-section:{s}"),
            ReviewFlag::SymlinkedCopyright => f.write_str("symlinked-copyright"),
            ReviewFlag::NoCopyrightFile => f.write_str("no-copyright-file"),
            ReviewFlag::CommonLicenseMissing(n) => write!(f, "common-license-missing:{n}"),
        }
    }
}

/// The license record of one binary package.
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn and_all(parts: &[String]) -> Option<String> {
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

// ---------------------------------------------------------------------------
// What a binary package ships

/// The paths a binary package installs (normalized, no leading `/`).
#[derive(Debug, Clone, Default)]
pub struct Shipped {
    /// All paths of regular files and symlinks.
    pub paths: Vec<String>,
}

impl Shipped {
    /// Nothing outside documentation/metadata directories.
    pub fn doc_only(&self) -> bool {
        !self.paths.iter().any(|p| {
            ![
                "usr/share/doc/",
                "usr/share/doc-base/",
                "usr/share/lintian/",
                "usr/share/bug/",
            ]
            .iter()
            .any(|d| p.starts_with(d))
        })
    }
    fn has_info(&self) -> bool {
        self.paths.iter().any(|p| p.starts_with("usr/share/info/"))
    }
    fn has_examples(&self) -> bool {
        self.paths.iter().any(|p| p.contains("/examples/"))
    }
}

/// Whether files matching a `Files:` pattern are shipped, and why not.
pub fn pattern_shipped(
    pattern: &str,
    cur: Option<&curated::CuratedSource>,
    shipped: &Shipped,
) -> Result<(), String> {
    if let Some(d) = cur.and_then(|c| c.path_decision(pattern)) {
        return if d.shipped {
            Ok(())
        } else {
            Err(format!("curated: {}", d.reason))
        };
    }
    let p = pattern.trim_start_matches("./");
    if p == "*" {
        return Ok(());
    }
    let comps: Vec<&str> = p.split('/').collect();
    let first = comps.first().copied().unwrap_or("");
    let base = comps.last().copied().unwrap_or("");
    if first == "debian" {
        return Err("Debian packaging only".into());
    }
    const TEST_DIRS: &[&str] = &[
        "tests",
        "test",
        "testsuite",
        "t",
        "testing",
        "regress",
        "fuzz",
        "ci",
        ".github",
    ];
    if comps[..comps.len().saturating_sub(1)]
        .iter()
        .any(|c| TEST_DIRS.contains(c))
        || base.ends_with(".tests")
        || base.ends_with(".test")
    {
        return Err("test suite, not installed".into());
    }
    const EXAMPLE_DIRS: &[&str] = &["examples", "example", "demo", "demos", "samples"];
    if comps[..comps.len().saturating_sub(1)]
        .iter()
        .any(|c| EXAMPLE_DIRS.contains(c))
        && !shipped.has_examples()
    {
        return Err("examples, and the package installs no examples".into());
    }
    if (base.ends_with(".texi") || base.ends_with(".texinfo") || base.ends_with(".txi"))
        && !shipped.has_info()
    {
        return Err("texinfo source, and the package installs no info manual".into());
    }
    const BUILD_DIRS: &[&str] = &["m4", "build-aux", "autom4te.cache"];
    const BUILD_FILES: &[&str] = &[
        "configure",
        "configure.ac",
        "configure.in",
        "aclocal.m4",
        "config.guess",
        "config.sub",
        "install-sh",
        "ltmain.sh",
        "missing",
        "depcomp",
        "compile",
        "Makefile.in",
        "Makefile.am",
        "autogen.sh",
        "mkinstalldirs",
        "ylwrap",
        "test-driver",
        "config.rpath",
    ];
    if (comps.len() > 1 && BUILD_DIRS.contains(&first)) || BUILD_FILES.contains(&base) {
        return Err("build system, not installed".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Evaluation

/// Result of evaluating a copyright text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The expression (None = NOASSERTION).
    pub expression: Option<String>,
    /// How.
    pub method: DetectionMethod,
    /// Flags raised.
    pub flags: Vec<ReviewFlag>,
    /// Decisions taken.
    pub notes: Vec<String>,
}

const LATER_GRANT: &[&str] = &[
    "or (at your option) any later version",
    "or any later version",
    ", or any later version",
    "or (at your option) any later",
];

/// Evaluate a DEP-5 copyright file for a binary package of `source`.
pub fn evaluate_dep5(text_in: &str, source: &str, shipped: &Shipped) -> Evaluation {
    let d = dep5::parse(text_in);
    let cur = curated::for_source(source);
    let mut flags = Vec::new();
    let mut notes = Vec::new();
    let doc_only = shipped.doc_only() && !shipped.paths.is_empty();
    let has_star = d.files.iter().any(|s| s.patterns.iter().any(|p| p == "*"));
    let mut parts: Vec<String> = Vec::new();
    for st in &d.files {
        let keep = if doc_only && has_star {
            let k = st.patterns.iter().any(|p| p == "*");
            if !k {
                notes.push(format!(
                    "dropped Files: {} ({}): the package ships only documentation; its umbrella Files: * stanza applies",
                    st.patterns.join(" "),
                    st.license
                ));
            }
            k
        } else {
            let reasons: Vec<Result<(), String>> = st
                .patterns
                .iter()
                .map(|p| pattern_shipped(p, cur, shipped))
                .collect();
            let k = reasons.iter().any(Result::is_ok);
            if !k {
                let why: Vec<String> = reasons.into_iter().filter_map(Result::err).collect();
                notes.push(format!(
                    "dropped Files: {} ({}): {}",
                    st.patterns.join(" "),
                    st.license,
                    why.join("; ")
                ));
            }
            k
        };
        if !keep {
            continue;
        }
        if st.license.trim().is_empty() {
            flags.push(ReviewFlag::UnknownLicense);
            notes.push(format!(
                "Files: {} has no License: name",
                st.patterns.join(" ")
            ));
            continue;
        }
        match names::translate_line(&st.license) {
            Ok(t) => {
                for n in t.unknown_names {
                    flags.push(ReviewFlag::UnknownLicenseName(n));
                }
                let mut expr = t.expression;
                // A GNU "-only" label whose own grant text says "or any later
                // version" is an or-later grant (e.g. GFDL-NIV-1.3 labels with
                // "Version 1.3 or any later version" text). Full license texts
                // are excluded: their appendix quotes the or-later wording.
                let single = !expr.contains(' ');
                if single && expr.ends_with("-only") {
                    let body = if st.text.is_empty() {
                        d.text_for(&st.license).unwrap_or("")
                    } else {
                        st.text.as_str()
                    };
                    let norm = text::normalize(body);
                    if norm.len() < 2000
                        && !norm.contains("terms and conditions")
                        && LATER_GRANT.iter().any(|g| norm.contains(g))
                    {
                        let upgraded = expr.replace("-only", "-or-later");
                        notes.push(format!(
                            "License: {} upgraded to {upgraded}: its grant text says 'or any later version'",
                            st.license
                        ));
                        expr = upgraded;
                    }
                }
                parts.push(expr);
            }
            Err(e) => {
                flags.push(ReviewFlag::UnknownLicenseName(st.license.clone()));
                notes.push(e.to_string());
            }
        }
    }
    let expression = and_all(&parts);
    let method = if expression.is_some() {
        DetectionMethod::Dep5
    } else {
        flags.push(ReviewFlag::UnknownLicense);
        DetectionMethod::Unknown
    };
    Evaluation {
        expression,
        method,
        flags,
        notes,
    }
}

/// Evaluate a prose copyright file for binary `package` of `source`.
pub fn evaluate_prose(text_in: &str, package: &str, source: &str) -> Evaluation {
    let norm = text::normalize(text_in);
    let mut flags = Vec::new();
    let mut notes = Vec::new();
    if let Some(rule) = curated::for_source(source).and_then(|c| c.rule_for(package)) {
        let missing: Vec<&str> = rule
            .evidence
            .iter()
            .copied()
            .filter(|e| !norm.contains(e))
            .collect();
        if missing.is_empty() {
            if rule.review {
                flags.push(ReviewFlag::CuratedNeedsReview);
            }
            return Evaluation {
                expression: canonical_expression(rule.expression).ok(),
                method: DetectionMethod::Curated {
                    reason: rule.reason.to_string(),
                },
                flags,
                notes,
            };
        }
        flags.push(ReviewFlag::CuratedEvidenceMissing);
        notes.push(format!(
            "curated rule for source {source} not applied: evidence missing: {}",
            missing.join(" | ")
        ));
    }
    let grants = text::grants(text_in);
    let parts: Vec<String> = grants.iter().map(|g| g.expression.clone()).collect();
    let expression = and_all(&parts);
    for g in &grants {
        notes.push(format!("recognized {} from: {}", g.expression, g.evidence));
    }
    let method = if expression.is_some() {
        flags.push(ReviewFlag::NonDep5Uncurated);
        DetectionMethod::Text
    } else {
        flags.push(ReviewFlag::UnknownLicense);
        DetectionMethod::Unknown
    };
    Evaluation {
        expression,
        method,
        flags,
        notes,
    }
}

// ---------------------------------------------------------------------------
// Reading packages

struct Scan {
    paths: Vec<String>,
    dir: Option<DataFile>,
    copyright: Option<DataFile>,
}

fn scan(package: &str, deb: &Path, doc: &str, limits: &Limits) -> Result<Scan, LicenseError> {
    let dir = format!("usr/share/doc/{doc}");
    let file = format!("{dir}/copyright");
    let seen = RefCell::new(Vec::new());
    let found = deb::read_data_files(
        deb,
        limits,
        &|p| {
            seen.borrow_mut().push(p.to_string());
            p == dir || p == file
        },
        16 << 20,
    )
    .map_err(|source| LicenseError::Deb {
        package: package.to_string(),
        source,
    })?;
    // Keep leaves only: an entry that is the parent of another is a directory.
    let mut all = seen.into_inner();
    all.sort();
    all.dedup();
    let parents: std::collections::BTreeSet<&str> = all
        .iter()
        .flat_map(|p| p.match_indices('/').map(move |(i, _)| &p[..i]))
        .collect();
    let leaves: Vec<String> = all
        .iter()
        .filter(|p| !parents.contains(p.as_str()))
        .cloned()
        .collect();
    let mut s = Scan {
        paths: leaves,
        dir: None,
        copyright: None,
    };
    for (name, f) in found {
        if name == dir {
            s.dir = Some(f);
        } else if name == file {
            s.copyright = Some(f);
        }
    }
    Ok(s)
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
    let first = scan(package, deb, package, limits)?;
    let shipped = Shipped {
        paths: first.paths.clone(),
    };
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
    if followed.is_some() {
        flags.push(ReviewFlag::SymlinkedCopyright);
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
        });
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let is_dep5 = dep5::is_dep5(&text);
    let ev = if is_dep5 {
        evaluate_dep5(&text, source, &shipped)
    } else {
        evaluate_prose(&text, package, source)
    };
    flags.extend(ev.flags);
    notes.extend(ev.notes);
    if ev
        .expression
        .as_deref()
        .is_some_and(|e| e.contains("LicenseRef-public-domain"))
    {
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
