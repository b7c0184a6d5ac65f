//! The dependency resolver.
//!
//! Computes the closure of a set of pinned packages over `Pre-Depends` and
//! `Depends` (never Recommends/Suggests), on top of packages already
//! installed (the base image). Choices are deterministic and explainable:
//!
//! 1. a dependency already satisfied by an installed or selected package
//!    (directly, or through `Provides`) adds nothing;
//! 2. otherwise the alternatives of `a | b` are tried in the order written;
//!    for a real package the highest version satisfying the constraint is
//!    taken; for a virtual package, a provider already selected wins, else
//!    the provider whose name sorts first (the reason says so; pin one to
//!    choose);
//! 3. packages are processed breadth-first in sorted order.
//!
//! `Conflicts`/`Breaks` among the result and the installed set are errors.
//! An unsatisfiable dependency reports the chain that led to it.

use super::index::{Index, Record};
use debian_control::lossy::Relation;
use debian_control::relations::VersionConstraint;
use debversion::Version;
use std::collections::{BTreeMap, VecDeque};

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
    #[error(
        "unsatisfiable dependency: {}\n  {reason}\nhelp: add a package that satisfies `{dependency}` to the mirror and pin it, or change the pin that needs it",
        chain.join(" -> ")
    )]
    Unsatisfiable {
        /// recipe -> package -> ... -> dependency
        chain: Vec<String>,
        dependency: String,
        reason: String,
    },
    #[error(
        "{label}: {a} {relation} {b}; both are in the closure\nhelp: remove one of them from the recipe (or the pin that pulls it in)"
    )]
    Conflict {
        label: String,
        a: String,
        relation: String,
        b: String,
    },
}

/// Whether `v` satisfies `(constraint, wanted)`.
pub fn satisfies(v: &Version, c: &Option<(VersionConstraint, Version)>) -> bool {
    match c {
        None => true,
        Some((op, want)) => match op {
            VersionConstraint::LessThan => v < want,
            VersionConstraint::LessThanEqual => v <= want,
            VersionConstraint::Equal => v == want,
            VersionConstraint::GreaterThanEqual => v >= want,
            VersionConstraint::GreaterThan => v > want,
        },
    }
}

fn arch_ok(rel: &Relation, arch: &str) -> bool {
    match rel.archqual.as_deref() {
        None | Some("any") | Some("native") => true,
        Some(a) => a == arch,
    }
}

/// Does `r` satisfy `rel` directly or through Provides?
fn provides(r: &Record, rel: &Relation) -> bool {
    if r.name == rel.name && satisfies(&r.version, &rel.version) {
        return true;
    }
    r.provides.iter().flatten().any(|p| {
        p.name == rel.name
            && match (&rel.version, &p.version) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(_), Some((_, pv))) => satisfies(pv, &rel.version),
            }
    })
}

fn rel_text(rel: &Relation) -> String {
    rel.to_string()
}

fn group_text(g: &[&Relation]) -> String {
    g.iter()
        .map(|r| rel_text(r))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Resolve `req` against `index`.
pub fn resolve(index: &Index, req: &Request<'_>) -> Result<Vec<Chosen>, ResolveError> {
    let arch = index.arch.as_str();
    let installed: BTreeMap<&str, &Record> =
        req.installed.iter().map(|r| (r.name.as_str(), r)).collect();
    // name -> (record, reason, parent name)
    let mut selected: BTreeMap<String, (Record, String, Option<String>)> = BTreeMap::new();
    let mut queue = VecDeque::new();

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
        if let Some(i) = installed.get(name.as_str()) {
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
        let rec = index.get(name, &v).ok_or_else(not_found)?;
        selected.insert(name.clone(), (rec.clone(), "pinned".into(), None));
        queue.push_back(name.clone());
    }

    let chain_of = |selected: &BTreeMap<String, (Record, String, Option<String>)>, name: &str| {
        let mut chain = vec![];
        let mut cur = Some(name.to_string());
        while let Some(n) = cur {
            let (r, _, parent) = &selected[&n];
            chain.push(format!("{} {}", r.name, r.version));
            cur = parent.clone();
        }
        chain.push(req.label.clone());
        chain.reverse();
        chain
    };

    while let Some(name) = queue.pop_front() {
        let rec = selected[&name].0.clone();
        for group in rec.pre_depends.iter().chain(rec.depends.iter()) {
            let group: Vec<&Relation> = group.into_iter().filter(|r| arch_ok(r, arch)).collect();
            if group.is_empty() {
                continue;
            }
            let satisfied = group.iter().any(|rel| {
                installed.values().any(|r| provides(r, rel))
                    || selected.values().any(|(r, _, _)| provides(r, rel))
            });
            if satisfied {
                continue;
            }
            let mut pick: Option<(Record, String)> = None;
            let mut why_not = Vec::new();
            for rel in &group {
                // A real package of that name.
                if let Some((cur, _, _)) = selected.get(&rel.name) {
                    why_not.push(format!(
                        "{} {} is already selected and does not satisfy {}",
                        cur.name,
                        cur.version,
                        rel_text(rel)
                    ));
                    continue;
                }
                if let Some(i) = installed.get(rel.name.as_str()) {
                    why_not.push(format!(
                        "{} {} is installed in the base and does not satisfy {}",
                        i.name,
                        i.version,
                        rel_text(rel)
                    ));
                    continue;
                }
                if let Some(cands) = index.by_name.get(&rel.name) {
                    if let Some(c) = cands.iter().find(|c| satisfies(&c.version, &rel.version)) {
                        pick = Some((
                            c.clone(),
                            format!("{} depends on {}", rec.name, group_text(&group)),
                        ));
                        break;
                    }
                    why_not.push(format!(
                        "{} has only {}",
                        rel.name,
                        cands
                            .iter()
                            .map(|c| c.version.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                // A virtual package.
                if let Some(provs) = index.providers.get(&rel.name) {
                    let mut names: Vec<&String> = provs
                        .iter()
                        .filter(|(_, pv)| match (&rel.version, pv) {
                            (None, _) => true,
                            (Some(_), None) => false,
                            (Some(_), Some(v)) => satisfies(v, &rel.version),
                        })
                        .map(|(n, _)| n)
                        .collect();
                    names.sort();
                    names.dedup();
                    let usable: Vec<&String> = names
                        .into_iter()
                        .filter(|n| {
                            !selected.contains_key(*n) && !installed.contains_key(n.as_str())
                        })
                        .collect();
                    if let Some(first) = usable.first()
                        && let Some(c) = index.by_name.get(*first).and_then(|l| l.first())
                    {
                        let note = if usable.len() > 1 {
                            format!(
                                " (virtual; chose {first} among {}; pin another to override)",
                                usable
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        } else {
                            " (virtual)".into()
                        };
                        pick = Some((
                            c.clone(),
                            format!("{} depends on {}{note}", rec.name, group_text(&group)),
                        ));
                        break;
                    }
                } else if !index.by_name.contains_key(&rel.name) {
                    why_not.push(format!("no package provides {}", rel.name));
                }
            }
            match pick {
                Some((c, reason)) => {
                    let n = c.name.clone();
                    selected.insert(n.clone(), (c, reason, Some(name.clone())));
                    queue.push_back(n);
                }
                None => {
                    let mut chain = chain_of(&selected, &name);
                    chain.push(group_text(&group));
                    return Err(ResolveError::Unsatisfiable {
                        chain,
                        dependency: group_text(&group),
                        reason: why_not.join("; "),
                    });
                }
            }
        }
    }

    // Conflicts and Breaks.
    let all: Vec<&Record> = selected
        .values()
        .map(|(r, _, _)| r)
        .chain(installed.values().copied())
        .collect();
    for (r, _, _) in selected.values() {
        for (field, rels) in [("conflicts with", &r.conflicts), ("breaks", &r.breaks)] {
            for rel in rels.iter().flatten() {
                for other in &all {
                    if other.name == r.name {
                        continue;
                    }
                    let hit = (other.name == rel.name && satisfies(&other.version, &rel.version))
                        || (rel.version.is_none()
                            && other.provides.iter().flatten().any(|p| p.name == rel.name));
                    if hit {
                        return Err(ResolveError::Conflict {
                            label: req.label.clone(),
                            a: format!("{} {}", r.name, r.version),
                            relation: format!("{field} {}", rel_text(rel)),
                            b: format!("{} {}", other.name, other.version),
                        });
                    }
                }
            }
        }
    }
    // Installed packages that break or conflict with a selected one.
    for i in req.installed {
        for (field, rels) in [("conflicts with", &i.conflicts), ("breaks", &i.breaks)] {
            for rel in rels.iter().flatten() {
                if let Some((o, _, _)) = selected.get(&rel.name)
                    && satisfies(&o.version, &rel.version)
                {
                    return Err(ResolveError::Conflict {
                        label: req.label.clone(),
                        a: format!("{} {}", i.name, i.version),
                        relation: format!("{field} {}", rel_text(rel)),
                        b: format!("{} {}", o.name, o.version),
                    });
                }
            }
        }
    }

    Ok(selected
        .into_values()
        .map(|(record, reason, _)| Chosen { record, reason })
        .collect())
}
