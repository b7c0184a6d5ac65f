//! The package universe as a SAT problem for the `resolvo` solver.
//!
//! # Why resolvo (and not pubgrub)
//!
//! Debian relations need three things a solver must express natively:
//! alternatives (`a | b`), virtual packages (`Provides`, versioned or not)
//! and negative relations (`Conflicts`, `Breaks`) that restrict a package
//! *without* installing it. resolvo (CDCL SAT, the libsolv design) has all
//! three: a requirement is a *union* of version sets, tried in the order we
//! give them; a version set is any predicate we evaluate ourselves, so "a
//! version of `postfix` that provides `mail-transport-agent`" is one set;
//! and `constrains` restrict a name only if something else installs it. Its
//! unsat core comes out as a conflict graph we turn into chains. pubgrub
//! has none of the three (one range per package, no optional constraints),
//! so alternatives and conflicts would need proxy packages, and its
//! explanations would then speak of those proxies.
//!
//! # The encoding
//!
//! * a solvable per package version (`Index::by_name`); a name installed in
//!   a lower layer has only its installed version as candidate;
//! * `Pre-Depends`/`Depends` group `a (op v) | b`: a union, in this order,
//!   of: the versions of `a` satisfying `op v`; for each provider `P` of `a`
//!   (apt's provider order, see [`provider_order`]) the versions of `P`
//!   whose `Provides: a` satisfies `op v`; then the same for `b`;
//! * `Conflicts`/`Breaks` `c (op v)`: a `constrains` on `c` (versions *not*
//!   matching) and on every provider of `c` other than the package itself;
//! * candidates of a name are tried highest version first.

use crate::pkgindex::{Index, Record};
use debian_control::lossy::Relation;
use debian_control::relations::VersionConstraint;
use debversion::Version;
use resolvo::utils::Pool;
use resolvo::{
    Candidates, ConditionalRequirement, Dependencies, DependencyProvider, Interner,
    KnownDependencies, NameId, Requirement, SolvableId, SolverCache, StringId, VersionSetId,
    VersionSetUnionId,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

/// A version constraint from a relation (`None` = any version).
pub type Constraint = Option<(VersionConstraint, Version)>;

/// A set of versions of one name, as a predicate on records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DebSet {
    /// `Some(virtual)`: the record must provide `virtual` (satisfying the
    /// constraint through its provided version); `None`: the record's own
    /// version must satisfy it.
    pub via: Option<String>,
    pub constraint: Constraint,
    /// The complement (for Conflicts/Breaks: the versions still allowed).
    pub negate: bool,
}

impl fmt::Display for DebSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match &self.constraint {
            None => String::new(),
            Some((op, v)) => format!(" ({op} {v})"),
        };
        match (&self.via, self.negate) {
            (None, false) if c.is_empty() => write!(f, "*"),
            (None, false) => write!(f, "{}", c.trim()),
            (None, true) => write!(f, "not{c}"),
            (Some(v), false) => write!(f, "providing {v}{c}"),
            (Some(v), true) => write!(f, "not providing {v}{c}"),
        }
    }
}

/// A solvable's payload: the record's position in [`Universe::records`].
#[derive(Debug, Clone)]
pub struct Cand {
    pub record: usize,
    version: String,
}

impl fmt::Display for Cand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.version)
    }
}

impl resolvo::utils::VersionSet for DebSet {
    type V = Cand;
}

/// Whether `v` satisfies `c`.
pub fn satisfies(v: &Version, c: &Constraint) -> bool {
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

/// Whether `r` provides `virt` in a way that satisfies `c` (a versioned
/// relation needs a versioned `Provides`).
pub fn provides_virtual(r: &Record, virt: &str, c: &Constraint) -> bool {
    r.provides.iter().flatten().any(|p| {
        p.name == virt
            && match (c, &p.version) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(_), Some((_, pv))) => satisfies(pv, c),
            }
    })
}

/// Whether `r` satisfies `rel` directly or through `Provides`.
pub fn satisfies_relation(r: &Record, rel: &Relation) -> bool {
    (r.name == rel.name && satisfies(&r.version, &rel.version))
        || provides_virtual(r, &rel.name, &rel.version)
}

/// Whether a relation applies on `arch` (`:any`/`:native` do).
pub fn arch_ok(rel: &Relation, arch: &str) -> bool {
    match rel.archqual.as_deref() {
        None | Some("any") | Some("native") => true,
        Some(a) => a == arch,
    }
}

/// The providers of `virt` that can satisfy `c`, in apt's order: essential
/// first, then `Important`, then higher priority (required < important <
/// standard < optional < extra), then the name apt's cache met *last*
/// (apt's final tie-break compares package IDs, highest first). Name order
/// never decides.
pub fn provider_order(index: &Index, virt: &str, c: &Constraint) -> Vec<String> {
    let mut names: Vec<&String> = index
        .providers
        .get(virt)
        .into_iter()
        .flatten()
        .filter(|(_, pv)| match (c, pv) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(v)) => satisfies(v, c),
        })
        .map(|(n, _)| n)
        .filter(|n| n.as_str() != virt)
        .collect();
    names.sort();
    names.dedup();
    let key = |n: &String| {
        let h = index.hints.get(n).cloned().unwrap_or_default();
        (
            !h.essential,
            !h.important,
            h.priority,
            std::cmp::Reverse(h.first_seen),
            n.clone(),
        )
    };
    names.sort_by_cached_key(|n| key(n));
    names.into_iter().cloned().collect()
}

/// The universe of one resolution: the index, the installed layer, and the
/// solver's interned view of them.
pub struct Universe<'a> {
    pub index: &'a Index,
    pub installed: BTreeMap<&'a str, &'a Record>,
    /// Every record a solvable was made for.
    pub records: RefCell<Vec<&'a Record>>,
    pub pool: Pool<DebSet, String>,
    /// apt's walk ([`super::walk`]): name -> version tried first.
    pub preferred: BTreeMap<String, Version>,
    candidates: RefCell<BTreeMap<NameId, Vec<SolvableId>>>,
}

impl<'a> Universe<'a> {
    /// A universe over `index`, with `installed` fixed.
    pub fn new(index: &'a Index, installed: &'a [Record]) -> Self {
        Universe {
            index,
            installed: installed.iter().map(|r| (r.name.as_str(), r)).collect(),
            records: RefCell::new(Vec::new()),
            pool: Pool::new(),
            preferred: BTreeMap::new(),
            candidates: RefCell::new(BTreeMap::new()),
        }
    }

    /// Whether a real package `name` exists (in the index or installed).
    pub fn is_real(&self, name: &str) -> bool {
        self.index.by_name.contains_key(name) || self.installed.contains_key(name)
    }

    /// The record behind a solvable.
    pub fn record(&self, s: SolvableId) -> &'a Record {
        let i = self.pool.resolve_solvable(s).record.record;
        self.records.borrow()[i]
    }

    /// Intern a version set of `name`.
    pub fn set(&self, name: &str, via: Option<&str>, c: &Constraint, negate: bool) -> VersionSetId {
        let n = self.pool.intern_package_name(name);
        self.pool.intern_version_set(
            n,
            DebSet {
                via: via.map(str::to_string),
                constraint: c.clone(),
                negate,
            },
        )
    }

    /// The requirement for one `a | b` group (see the module doc).
    pub fn group_requirement(&self, group: &[&Relation]) -> Requirement {
        let mut sets: Vec<VersionSetId> = Vec::new();
        for rel in group {
            if self.is_real(&rel.name) {
                sets.push(self.set(&rel.name, None, &rel.version, false));
            }
            for p in provider_order(self.index, &rel.name, &rel.version) {
                sets.push(self.set(&p, Some(&rel.name), &rel.version, false));
            }
        }
        if sets.is_empty() {
            // Nothing at all: a set with no candidates makes it unsatisfiable.
            sets.push(self.set(&group[0].name, None, &group[0].version, false));
        }
        let mut seen = std::collections::BTreeSet::new();
        sets.retain(|s| seen.insert(*s));
        // What apt's walk took is tried first (a stable sort keeps the rest
        // in apt's order).
        sets.sort_by_key(|s| {
            let name = self
                .pool
                .resolve_package_name(self.pool.resolve_version_set_package_name(*s));
            !self.preferred.contains_key(name)
        });
        if sets.len() == 1 {
            Requirement::Single(sets[0])
        } else {
            Requirement::Union(
                self.pool
                    .intern_version_set_union(sets[0], sets.into_iter().skip(1)),
            )
        }
    }

    fn constrains(&self, r: &Record) -> Vec<VersionSetId> {
        let mut out = Vec::new();
        for rel in r.conflicts.iter().chain(r.breaks.iter()).flatten() {
            if !arch_ok(rel, &self.index.arch) {
                continue;
            }
            if rel.name != r.name && self.is_real(&rel.name) {
                out.push(self.set(&rel.name, None, &rel.version, true));
            }
            for p in provider_order(self.index, &rel.name, &rel.version) {
                if p != r.name {
                    out.push(self.set(&p, Some(&rel.name), &rel.version, true));
                }
            }
        }
        out
    }

    fn matches(&self, s: SolvableId, set: &DebSet) -> bool {
        let r = self.record(s);
        let hit = match &set.via {
            None => satisfies(&r.version, &set.constraint),
            Some(v) => provides_virtual(r, v, &set.constraint),
        };
        hit != set.negate
    }
}

impl Interner for Universe<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, s: SolvableId) -> impl fmt::Display + '_ {
        let r = self.record(s);
        format!("{} {}", r.name, r.version)
    }
    fn display_solvable_name(&self, s: SolvableId) -> impl fmt::Display + '_ {
        self.record(s).name.clone()
    }
    fn display_merged_solvables(&self, ss: &[SolvableId]) -> impl fmt::Display + '_ {
        let mut v: Vec<String> = ss
            .iter()
            .map(|s| self.record(*s).version.to_string())
            .collect();
        v.sort();
        v.dedup();
        match ss.first() {
            None => String::new(),
            Some(s) => format!("{} {}", self.record(*s).name, v.join(" | ")),
        }
    }
    fn display_name(&self, n: NameId) -> impl fmt::Display + '_ {
        self.pool.resolve_package_name(n).clone()
    }
    fn display_version_set(&self, vs: VersionSetId) -> impl fmt::Display + '_ {
        self.pool.resolve_version_set(vs).to_string()
    }
    fn display_string(&self, s: StringId) -> impl fmt::Display + '_ {
        self.pool.resolve_string(s).to_string()
    }
    fn version_set_name(&self, vs: VersionSetId) -> NameId {
        self.pool.resolve_version_set_package_name(vs)
    }
    fn solvable_name(&self, s: SolvableId) -> NameId {
        self.pool.resolve_solvable(s).name
    }
    fn version_sets_in_union(&self, u: VersionSetUnionId) -> impl Iterator<Item = VersionSetId> {
        self.pool.resolve_version_set_union(u)
    }
    fn resolve_condition(&self, c: resolvo::ConditionId) -> resolvo::Condition {
        self.pool.resolve_condition(c).clone()
    }
}

impl DependencyProvider for Universe<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        vs: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let set = self.pool.resolve_version_set(vs);
        candidates
            .iter()
            .copied()
            .filter(|s| self.matches(*s, set) != inverse)
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates> {
        if let Some(c) = self.candidates.borrow().get(&name) {
            return Some(Candidates {
                candidates: c.clone(),
                ..Default::default()
            });
        }
        let n = self.pool.resolve_package_name(name).clone();
        let recs: Vec<&Record> = match self.installed.get(n.as_str()) {
            Some(r) => vec![*r],
            // Roots are merged-/usr from the start: never convert them.
            None if n == super::USRMERGE => Vec::new(),
            None => self.index.by_name.get(&n)?.iter().collect(),
        };
        let ids: Vec<SolvableId> = recs
            .into_iter()
            .map(|r| {
                let mut all = self.records.borrow_mut();
                all.push(r);
                let cand = Cand {
                    record: all.len() - 1,
                    version: r.version.to_string(),
                };
                self.pool.intern_solvable(name, cand)
            })
            .collect();
        self.candidates.borrow_mut().insert(name, ids.clone());
        Some(Candidates {
            candidates: ids,
            ..Default::default()
        })
    }

    async fn sort_candidates(&self, _: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        // apt's walk's version, then highest first; the index's order breaks ties.
        solvables.sort_by(|a, b| {
            let (ra, rb) = (self.record(*a), self.record(*b));
            let pref = |r: &Record| self.preferred.get(&r.name) != Some(&r.version);
            pref(ra)
                .cmp(&pref(rb))
                .then(rb.version.cmp(&ra.version))
                .then(a.cmp(b))
        });
    }

    async fn get_dependencies(&self, s: SolvableId) -> Dependencies {
        let r = self.record(s);
        let arch = self.index.arch.as_str();
        let requirements: Vec<ConditionalRequirement> = r
            .pre_depends
            .iter()
            .chain(r.depends.iter())
            .filter_map(|g| {
                let group: Vec<&Relation> = g.into_iter().filter(|x| arch_ok(x, arch)).collect();
                (!group.is_empty()).then(|| self.group_requirement(&group).into())
            })
            .collect();
        Dependencies::Known(KnownDependencies {
            requirements,
            constrains: self.constrains(r),
        })
    }
}
