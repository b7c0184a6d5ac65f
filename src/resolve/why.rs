//! Why a package is in a closure, and why a set of pins cannot be met.
//!
//! * [`reasons`]: after solving, each package's `reason` (the lock field)
//!   and parent, found breadth-first from the pins in sorted order: a
//!   package's reason is the first dependency, in that walk, that it is the
//!   first satisfier of (alternatives in order, providers in apt's order);
//! * [`explain_conflict`]: turns the solver's conflict graph into problems
//!   (a conflict, two versions of one package, a dependency nothing
//!   satisfies), each with the chain from the recipe to both sides, and the
//!   pins that would resolve it;
//! * [`explain_lock`]: `imgforge lock --explain PACKAGE`, from the lock.

use super::provider::{Universe, arch_ok, provider_order, satisfies, satisfies_relation};
use super::solver::Request;
use super::{Lock, LockedImage};
use crate::pkgindex::{Index, Record};
use debian_control::lossy::Relation;
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use resolvo::conflict::{ConflictCause, ConflictEdge, ConflictGraph, ConflictNode};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// Why one package is in the closure.
#[derive(Debug, Clone)]
pub struct Reason {
    /// `pinned` or `<parent> depends on <group>`.
    pub text: String,
    pub parent: Option<String>,
}

fn groups<'r>(r: &'r Record, arch: &str) -> Vec<Vec<&'r Relation>> {
    r.pre_depends
        .iter()
        .chain(r.depends.iter())
        .map(|g| {
            g.into_iter()
                .filter(|x| arch_ok(x, arch))
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

fn group_text(g: &[&Relation]) -> String {
    g.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The first package of `pool` that satisfies `group`, in apt's order, and
/// the providers it was chosen among when it came through `Provides`.
fn first_satisfier<'a>(
    index: &Index,
    group: &[&Relation],
    pool: &BTreeMap<String, &'a Record>,
) -> Option<(&'a Record, Vec<String>)> {
    for rel in group {
        if let Some(r) = pool.get(&rel.name)
            && satisfies(&r.version, &rel.version)
        {
            return Some((r, vec![]));
        }
        let provs = provider_order(index, &rel.name, &rel.version);
        if let Some(p) = provs
            .iter()
            .find(|p| pool.get(*p).is_some_and(|r| satisfies_relation(r, rel)))
        {
            return Some((pool[p], provs));
        }
    }
    None
}

/// Each selected package's reason and parent (see the module doc).
pub fn reasons(
    index: &Index,
    pinned: &[String],
    selected: &BTreeMap<String, &Record>,
    installed: &[Record],
) -> BTreeMap<String, Reason> {
    let mut out: BTreeMap<String, Reason> = BTreeMap::new();
    let mut reached: BTreeMap<String, &Record> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for n in pinned {
        if let Some(r) = selected.get(n) {
            let reason = Reason {
                text: "pinned".into(),
                parent: None,
            };
            out.insert(n.clone(), reason);
            reached.insert(n.clone(), r);
            queue.push_back(*r);
        }
    }
    let done = |g: &[&Relation], reached: &BTreeMap<String, &Record>| {
        g.iter().any(|rel| {
            installed.iter().any(|i| satisfies_relation(i, rel))
                || reached.values().any(|r| satisfies_relation(r, rel))
        })
    };
    while let Some(r) = queue.pop_front() {
        for g in groups(r, &index.arch) {
            if done(&g, &reached) {
                continue;
            }
            let Some((c, among)) = first_satisfier(index, &g, selected) else {
                continue;
            };
            let note = match among.len() {
                0 => String::new(),
                1 => " (virtual)".to_string(),
                n => format!(
                    " (virtual; {} is first of {n} providers in apt's order; pin another to override)",
                    c.name
                ),
            };
            let text = format!("{} depends on {}{note}", r.name, group_text(&g));
            out.insert(
                c.name.clone(),
                Reason {
                    text,
                    parent: Some(r.name.clone()),
                },
            );
            reached.insert(c.name.clone(), c);
            queue.push_back(c);
        }
    }
    for (n, r) in selected {
        if !out.contains_key(n) {
            let parent = reached.values().find(|p| {
                groups(p, &index.arch)
                    .iter()
                    .any(|g| g.iter().any(|rel| satisfies_relation(r, rel)))
            });
            let text = match parent {
                Some(p) => format!(
                    "{} depends on it (another package also satisfies that)",
                    p.name
                ),
                None => "required by the solution".to_string(),
            };
            out.insert(
                n.clone(),
                Reason {
                    text,
                    parent: parent.map(|p| p.name.clone()),
                },
            );
        }
    }
    out
}

// ------------------------------------------------------------ conflicts

/// One reason the pins cannot be met.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// What goes wrong, e.g. `exim4-daemon-light 4.96 conflicts with postfix`.
    pub what: String,
    /// The chain from the recipe to each side.
    pub chains: Vec<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  {}", self.what)?;
        for c in &self.chains {
            writeln!(f, "    {c}")?;
        }
        Ok(())
    }
}

struct Graph<'g, 'u, 'a> {
    g: &'g ConflictGraph,
    u: &'u Universe<'a>,
    label: String,
    parent: BTreeMap<NodeIndex, NodeIndex>,
}

impl<'a> Graph<'_, '_, 'a> {
    fn rec(&self, n: NodeIndex) -> Option<&'a Record> {
        match self.g.graph[n] {
            ConflictNode::Solvable(s) => Some(self.u.record(s)),
            _ => None,
        }
    }
    fn name(&self, n: NodeIndex) -> String {
        match self.rec(n) {
            Some(r) => format!("{} {}", r.name, r.version),
            None => self.label.clone(),
        }
    }
    /// Breadth-first parents from the root over `Requires` edges, visiting
    /// successors in name order (node indices are not stable across runs).
    fn bfs(&mut self) {
        let mut queue = VecDeque::from([self.g.root_node]);
        let mut seen = BTreeSet::from([self.g.root_node]);
        while let Some(n) = queue.pop_front() {
            let mut next: Vec<(String, NodeIndex)> = self
                .g
                .graph
                .edges_directed(n, Direction::Outgoing)
                .filter(|e| matches!(e.weight(), ConflictEdge::Requires(_)))
                .filter(|e| matches!(self.g.graph[e.target()], ConflictNode::Solvable(_)))
                .map(|e| (self.name(e.target()), e.target()))
                .collect();
            next.sort();
            for (_, t) in next {
                if seen.insert(t) {
                    self.parent.insert(t, n);
                    queue.push_back(t);
                }
            }
        }
    }
    fn path(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut v = vec![n];
        let mut cur = n;
        while let Some(p) = self.parent.get(&cur) {
            v.push(*p);
            cur = *p;
        }
        v.reverse();
        v
    }
    fn chain(&self, n: NodeIndex) -> String {
        let p = self.path(n);
        let mut s: Vec<String> = p.iter().map(|x| self.name(*x)).collect();
        if p.first() != Some(&self.g.root_node) {
            s.insert(0, format!("{} -> ...", self.label));
        }
        s.join(" -> ")
    }
}

/// The problems in a conflict graph and the pins that would resolve them.
pub fn explain_conflict(
    g: &ConflictGraph,
    u: &Universe<'_>,
    req: &Request<'_>,
) -> (Vec<Problem>, Vec<Hint>) {
    let mut gr = Graph {
        g,
        u,
        label: req.label.clone(),
        parent: BTreeMap::new(),
    };
    gr.bfs();
    let mut problems = BTreeSet::new();
    let mut help = BTreeSet::new();
    for e in g.graph.edge_references() {
        let (a, b) = (e.source(), e.target());
        match e.weight() {
            ConflictEdge::Conflict(ConflictCause::Constrains(_)) => {
                let (Some(ra), Some(rb)) = (gr.rec(a), gr.rec(b)) else {
                    continue;
                };
                let rel = negative_relation(ra, rb);
                problems.insert(Problem {
                    what: format!("{} {rel}, but {} is needed too", gr.name(a), gr.name(b)),
                    chains: vec![gr.chain(a), gr.chain(b)],
                });
                help.extend(accepted_versions(ra, rb, u.index));
                help.extend(alternative_pins(&gr, b, u.index));
                help.extend(alternative_pins(&gr, a, u.index));
            }
            ConflictEdge::Conflict(ConflictCause::ForbidMultipleInstances) => {
                let (Some(ra), Some(rb)) = (gr.rec(a), gr.rec(b)) else {
                    continue;
                };
                let (x, y) = if ra.version < rb.version {
                    (a, b)
                } else {
                    (b, a)
                };
                problems.insert(Problem {
                    what: format!(
                        "{} is needed as {} and as {} (only one version can be installed)",
                        ra.name,
                        gr.rec(x).map(|r| r.version.to_string()).unwrap_or_default(),
                        gr.rec(y).map(|r| r.version.to_string()).unwrap_or_default()
                    ),
                    chains: vec![gr.chain(x), gr.chain(y)],
                });
                help.extend(version_pins(&gr, x, y, u.index));
                help.extend(version_pins(&gr, y, x, u.index));
            }
            ConflictEdge::Requires(_) if Some(b) == g.unresolved_node => {
                let Some(ra) = gr.rec(a) else { continue };
                let dep = missing_group(ra, u).unwrap_or_else(|| "a dependency".into());
                problems.insert(Problem {
                    what: format!(
                        "{} depends on {dep}, which no package in the source satisfies",
                        gr.name(a)
                    ),
                    chains: vec![format!("{} -> {dep}", gr.chain(a))],
                });
                help.insert(Hint {
                    text: format!(
                        "add a package that satisfies `{dep}` to the mirror, or pin a version of {} that does not need it",
                        ra.name
                    ),
                    pin: None,
                });
            }
            _ => {}
        }
    }
    (problems.into_iter().collect(), help.into_iter().collect())
}

/// `conflicts with X` or `breaks X (<< 2)`: the relation of `a` hitting `b`.
fn negative_relation(a: &Record, b: &Record) -> String {
    for (field, rels) in [("conflicts with", &a.conflicts), ("breaks", &a.breaks)] {
        if let Some(rel) = rels.iter().flatten().find(|rel| satisfies_relation(b, rel)) {
            return format!("{field} {rel}");
        }
    }
    for (field, rels) in [("conflicts with", &b.conflicts), ("breaks", &b.breaks)] {
        if let Some(rel) = rels.iter().flatten().find(|rel| satisfies_relation(a, rel)) {
            return format!(
                "is {field_pp} by {}: {field} {rel}",
                b.name,
                field_pp = if field == "breaks" {
                    "broken"
                } else {
                    "in conflict"
                }
            );
        }
    }
    "conflicts with".into()
}

/// Pins of another version of `b` that `a`'s Conflicts/Breaks allow.
fn accepted_versions(a: &Record, b: &Record, index: &Index) -> Vec<Hint> {
    let hit = |c: &Record| {
        a.conflicts
            .iter()
            .chain(a.breaks.iter())
            .flatten()
            .any(|rel| satisfies_relation(c, rel))
    };
    index
        .by_name
        .get(&b.name)
        .into_iter()
        .flatten()
        .find(|c| c.version != b.version && !hit(c))
        .map(|c| Hint {
            text: format!(
                "pin {} = \"{}\" ({} {} accepts it)",
                c.name, c.version, a.name, a.version
            ),
            pin: Some((c.name.clone(), c.version.to_string())),
        })
        .into_iter()
        .collect()
}

/// A way out: a message, and the pin it proposes (checked by re-solving).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hint {
    pub text: String,
    pub pin: Option<(String, String)>,
}

/// Pins that replace `n` by another alternative of the dependency that
/// brought it in (a recipe pin is a hard constraint, so pinning the other
/// alternative makes the solver take it).
fn alternative_pins(gr: &Graph<'_, '_, '_>, n: NodeIndex, index: &Index) -> Vec<Hint> {
    let (Some(r), Some(p)) = (gr.rec(n), gr.parent.get(&n)) else {
        return vec![];
    };
    let Some(pr) = gr.rec(*p) else {
        return vec![Hint {
            text: format!("remove the pin {} {} from the recipe", r.name, r.version),
            pin: None,
        }];
    };
    let mut out = vec![];
    for g in groups(pr, &index.arch) {
        if !g.iter().any(|rel| satisfies_relation(r, rel)) {
            continue;
        }
        for rel in &g {
            let mut names: Vec<String> = vec![];
            if index.by_name.contains_key(&rel.name) {
                names.push(rel.name.clone());
            }
            names.extend(provider_order(index, &rel.name, &rel.version));
            for other in names.into_iter().filter(|x| *x != r.name).take(2) {
                if let Some(v) = index.by_name.get(&other).and_then(|l| l.first()) {
                    out.push(Hint {
                        text: format!(
                            "pin {other} = \"{}\" (it also satisfies `{}` for {}, instead of {})",
                            v.version,
                            group_text(&g),
                            pr.name,
                            r.name
                        ),
                        pin: Some((other.clone(), v.version.to_string())),
                    });
                }
            }
        }
    }
    out.truncate(2);
    out
}

/// Pins that make `x`'s side accept `y`'s version of the same package: pin
/// the package that requires `x` to a version whose dependency accepts `y`.
fn version_pins(gr: &Graph<'_, '_, '_>, x: NodeIndex, y: NodeIndex, index: &Index) -> Vec<Hint> {
    let (Some(rx), Some(ry)) = (gr.rec(x), gr.rec(y)) else {
        return vec![];
    };
    let Some(px) = gr.parent.get(&x).and_then(|p| gr.rec(*p)) else {
        return vec![Hint {
            text: format!(
                "pin {} = \"{}\" instead of \"{}\" (the version the other side needs)",
                rx.name, ry.version, rx.version
            ),
            pin: Some((rx.name.clone(), ry.version.to_string())),
        }];
    };
    let accepts = |cand: &Record| {
        groups(cand, &index.arch).iter().all(|g| {
            !g.iter().any(|rel| rel.name == ry.name)
                || g.iter().any(|rel| satisfies_relation(ry, rel))
        })
    };
    match index
        .by_name
        .get(&px.name)
        .into_iter()
        .flatten()
        .find(|c| accepts(c))
    {
        Some(c) => vec![Hint {
            text: format!(
                "pin {} = \"{}\" (it accepts {} {}; {} {} needs {} {})",
                c.name, c.version, ry.name, ry.version, px.name, px.version, rx.name, rx.version
            ),
            pin: Some((c.name.clone(), c.version.to_string())),
        }],
        None => vec![],
    }
}

/// The first dependency group of `r` that nothing can satisfy.
fn missing_group(r: &Record, u: &Universe<'_>) -> Option<String> {
    let ok = |rel: &Relation| {
        u.index
            .by_name
            .get(&rel.name)
            .is_some_and(|l| l.iter().any(|c| satisfies(&c.version, &rel.version)))
            || !provider_order(u.index, &rel.name, &rel.version).is_empty()
            || u.installed.values().any(|i| satisfies_relation(i, rel))
    };
    groups(r, &u.index.arch)
        .into_iter()
        .find(|g| !g.iter().any(|rel| ok(rel)))
        .map(|g| group_text(&g))
}

// ------------------------------------------------------------ lock --explain

/// Why `package` is in each image of `lock`: the chain from the recipe's
/// pin to it, one line per hop with its reason. `None` if no image has it.
pub fn explain_lock(lock: &Lock, package: &str) -> Option<String> {
    let mut out = String::new();
    for img in &lock.images {
        if let Some(chain) = lock_chain(img, package) {
            out.push_str(&format!("{} ({}):\n", img.name, img.stage));
            for (name, version, reason) in chain {
                out.push_str(&format!("  {name} {version}: {reason}\n"));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The chain from the recipe's pin to `package` in one closure of the
/// lock: (name, version, reason) per hop, the pin first. `None` if the
/// closure does not have it.
pub fn lock_chain(img: &LockedImage, package: &str) -> Option<Vec<(String, String, String)>> {
    let by_name: BTreeMap<&str, _> = img.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut cur = *by_name.get(package)?;
    let mut chain = vec![];
    let mut seen = BTreeSet::new();
    loop {
        chain.push((cur.name.clone(), cur.version.clone(), cur.reason.clone()));
        if !seen.insert(cur.name.clone()) {
            break;
        }
        let parent = cur.reason.split_once(" depends on").map(|(p, _)| p);
        match parent.and_then(|p| by_name.get(p)) {
            Some(p) => cur = p,
            None => break,
        }
    }
    chain.reverse();
    Some(chain)
}
