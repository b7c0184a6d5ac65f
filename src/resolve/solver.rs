//! The dependency resolver: the closure of a set of pinned packages over
//! `Pre-Depends` and `Depends` (never Recommends/Suggests), on top of the
//! packages already installed in lower layers.
//!
//! Resolution is a constraint problem solved by `resolvo` (CDCL with
//! backtracking; see [`super::provider`] for why and for the encoding): the
//! recipe's pins are hard constraints, `Conflicts`/`Breaks` hold between
//! every pair of packages in the result and the installed set, and a choice
//! that later conflicts is undone instead of failing. The choices follow apt
//! (`apt-get install --no-install-recommends` from an empty system):
//!
//! 1. a dependency already satisfied by an installed or required package
//!    adds nothing;
//! 2. alternatives `a | b` are tried in the order written; within one, a real
//!    package of that name first, then its providers in apt's order
//!    ([`super::provider::provider_order`]: essential, important, priority,
//!    then the name apt's cache met last; never name order alone);
//! 3. the highest version allowed by every constraint wins.
//!
//! Failures are explained with both sides' chains from the recipe and the
//! pins that would resolve them ([`super::why`]).

use super::provider::Universe;
use super::{walk, why};
use crate::pkgindex::{Index, Record};
use debian_control::relations::VersionConstraint;
use debversion::Version;
use resolvo::{ConditionalRequirement, Problem, Solver, UnsolvableOrCancelled};
use std::collections::BTreeMap;

pub use super::provider::satisfies;

/// What to resolve.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// For messages: `base`, `nginx`, `hello (build stage)`.
    pub label: String,
    /// name -> exact version.
    pub pins: &'a BTreeMap<String, String>,
    /// Already installed (lower layers); they satisfy dependencies and are
    /// not part of the result.
    pub installed: &'a [Record],
    /// Taken first among alternatives (what a Debian system always has:
    /// the configure toolset), and shipped when taken.
    pub prefer: &'a [Record],
}

/// A package in the closure, with why it is there.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub record: Record,
    /// `pinned` or `<parent> depends on <relation>`.
    pub reason: String,
}

/// Resolution failures; each says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error(
        "{label}: {package} {version} is not in the package source{}\nhelp: pin a version the mirror has, add the .deb to the mirror, or enable apt and run `apt-get update`",
        if available.is_empty() { " (no version at all)".to_string() } else { format!(" (available: {})", available.join(", ")) }
    )]
    PinNotFound {
        label: String,
        package: String,
        version: String,
        available: Vec<String>,
    },
    #[error(
        "{label}: {package} is pinned to {version} but {installed} is already installed from the base\nhelp: pin the base's version, or change the base"
    )]
    PinClash {
        label: String,
        package: String,
        version: String,
        installed: String,
    },
    /// No set of packages satisfies the pins: each problem is one side
    /// against another (or a dependency nothing satisfies), with the chain
    /// from the recipe to each side.
    #[error(
        "{label}: the pins cannot all be met\n{}{}",
        render_problems(problems),
        render_help(help)
    )]
    Unsolvable {
        label: String,
        problems: Vec<why::Problem>,
        help: Vec<String>,
    },
}

fn render_problems(problems: &[why::Problem]) -> String {
    problems.iter().map(|p| p.to_string()).collect()
}

fn render_help(help: &[String]) -> String {
    help.iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                format!("help: {h}")
            } else {
                format!("\n  or: {h}")
            }
        })
        .collect()
}

/// Check the pins against the index and the installed set; returns the
/// exact version of every pin not already installed.
fn check_pins(index: &Index, req: &Request<'_>) -> Result<Vec<(String, Version)>, ResolveError> {
    let mut out = Vec::new();
    for (name, ver) in req.pins {
        let not_found = || ResolveError::PinNotFound {
            label: req.label.clone(),
            package: name.clone(),
            version: ver.clone(),
            available: index
                .by_name
                .get(name)
                .map(|l| l.iter().map(|r| r.version.to_string()).collect())
                .unwrap_or_default(),
        };
        let v: Version = ver.parse().map_err(|_| not_found())?;
        if let Some(i) = req.installed.iter().find(|r| &r.name == name) {
            if i.version == v {
                continue;
            }
            return Err(ResolveError::PinClash {
                label: req.label.clone(),
                package: name.clone(),
                version: ver.clone(),
                installed: i.version.to_string(),
            });
        }
        index.get(name, &v).ok_or_else(not_found)?;
        out.push((name.clone(), v));
    }
    Ok(out)
}

/// Keep the hints whose proposed pin really resolves the request (each is
/// re-solved with that pin added or changed); if none does, say which pins
/// to drop.
fn checked_help(index: &Index, req: &Request<'_>, hints: Vec<why::Hint>) -> Vec<String> {
    let works = |(name, version): &(String, String)| {
        let mut pins = req.pins.clone();
        pins.insert(name.clone(), version.clone());
        let r = Request {
            label: req.label.clone(),
            pins: &pins,
            installed: req.installed,
            prefer: req.prefer,
        };
        solve(index, &r).is_ok()
    };
    let mut out: Vec<String> = hints
        .iter()
        .filter(|h| h.pin.as_ref().is_some_and(works))
        .map(|h| h.text.clone())
        .take(4)
        .collect();
    out.extend(
        hints
            .iter()
            .filter(|h| h.pin.is_none())
            .map(|h| h.text.clone()),
    );
    if out.is_empty() {
        let names: Vec<&str> = req.pins.keys().map(String::as_str).collect();
        out.push(format!(
            "no single pin resolves it: remove one of the pins ({}) or the package that needs the other side",
            names.join(", ")
        ));
    }
    out
}

/// Resolve `req` against `index`.
pub fn resolve(index: &Index, req: &Request<'_>) -> Result<Vec<Chosen>, ResolveError> {
    solve(index, req).map_err(|e| match e {
        Failure::Plain(e) => e,
        Failure::Unsolvable { problems, hints } => ResolveError::Unsolvable {
            label: req.label.clone(),
            problems,
            help: checked_help(index, req, hints),
        },
    })
}

enum Failure {
    Plain(ResolveError),
    Unsolvable {
        problems: Vec<why::Problem>,
        hints: Vec<why::Hint>,
    },
}

impl From<ResolveError> for Failure {
    fn from(e: ResolveError) -> Self {
        Failure::Plain(e)
    }
}

fn solve(index: &Index, req: &Request<'_>) -> Result<Vec<Chosen>, Failure> {
    let pins = check_pins(index, req)?;
    let mut universe = Universe::new(index, req.installed);
    let pinned: Vec<&Record> = pins.iter().filter_map(|(n, v)| index.get(n, v)).collect();
    universe.preferred = walk::apt_walk(index, &pinned, req.installed, req.prefer)
        .into_iter()
        .map(|(n, r)| (n, r.version.clone()))
        .collect();
    let exact = |name: &str, v: &Version| {
        let c = Some((VersionConstraint::Equal, v.clone()));
        ConditionalRequirement::from(universe.set(name, None, &c, false))
    };
    let mut requirements: Vec<ConditionalRequirement> =
        pins.iter().map(|(n, v)| exact(n, v)).collect();
    requirements.extend(req.installed.iter().map(|r| exact(&r.name, &r.version)));
    let mut solver = Solver::new(universe);
    let solution = match solver.solve(Problem::new().requirements(requirements)) {
        Ok(s) => s,
        Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
            let graph = conflict.graph(&solver);
            let (problems, hints) = why::explain_conflict(&graph, solver.provider(), req);
            return Err(Failure::Unsolvable { problems, hints });
        }
        Err(UnsolvableOrCancelled::Cancelled(_)) => unreachable!("resolution is never cancelled"),
    };
    let u = solver.provider();
    let mut selected: BTreeMap<String, &Record> = BTreeMap::new();
    for s in solution {
        let r = u.record(s);
        if !u.installed.contains_key(r.name.as_str()) {
            selected.insert(r.name.clone(), r);
        }
    }
    let pinned: Vec<String> = pins.into_iter().map(|(n, _)| n).collect();
    let reasons = why::reasons(index, &pinned, &selected, req.installed);
    Ok(selected
        .into_iter()
        .map(|(name, r)| Chosen {
            record: r.clone(),
            reason: reasons[&name].text.clone(),
        })
        .collect())
}
