//! apt's own walk, used as the solver's preference.
//!
//! apt (`MarkInstall`) marks the requested packages, then walks each one's
//! dependencies depth-first in the order written: a dependency already met
//! by a marked package adds nothing, otherwise the first candidate (the
//! alternatives in order; for each, the real package then its providers in
//! apt's order) is marked and walked at once. Which packages end up marked
//! therefore depends on that order (`php-redis` needs `php8.2-redis`, which
//! brings `php8.2-igbinary`, before its own `php-igbinary` is looked at).
//! A SAT solver decides in its own order, so it is handed this walk as a
//! preference: alternatives the walk took are tried first. When the walk
//! ends in a conflict (it never backtracks, apt's resolver has to repair
//! it), the solver still backtracks to a consistent closure.

use super::provider::{arch_ok, provider_order, satisfies, satisfies_relation};
use crate::pkgindex::{Index, Record};
use debian_control::lossy::Relation;
use std::collections::BTreeMap;

/// The packages apt's walk marks for `pins` over `installed`. An
/// alternative that one of `prefer` satisfies (the packages a Debian
/// system always has: the Essential set, usr-is-merged) is taken first, as
/// apt finds it already met there; it is still marked, so it ships.
pub fn apt_walk<'a>(
    index: &'a Index,
    pins: &[&'a Record],
    installed: &'a [Record],
    prefer: &'a [Record],
) -> BTreeMap<String, &'a Record> {
    let mut w = Walk {
        index,
        installed,
        prefer,
        marked: pins.iter().map(|r| (r.name.clone(), *r)).collect(),
    };
    for r in pins {
        w.walk(r, 0);
    }
    w.marked
}

struct Walk<'a> {
    index: &'a Index,
    installed: &'a [Record],
    prefer: &'a [Record],
    marked: BTreeMap<String, &'a Record>,
}

impl<'a> Walk<'a> {
    fn met(&self, group: &[&Relation]) -> bool {
        group.iter().any(|rel| {
            self.installed.iter().any(|i| satisfies_relation(i, rel))
                || self.marked.values().any(|r| satisfies_relation(r, rel))
        })
    }

    fn clashes(&self, c: &Record) -> bool {
        let hits = |a: &Record, b: &Record| {
            a.name != b.name
                && a.conflicts
                    .iter()
                    .chain(a.breaks.iter())
                    .flatten()
                    .any(|rel| satisfies_relation(b, rel))
        };
        self.marked.contains_key(&c.name)
            || self.installed.iter().any(|i| i.name == c.name)
            || self
                .marked
                .values()
                .copied()
                .chain(self.installed.iter())
                .any(|o| hits(c, o) || hits(o, c))
    }

    /// The index's record of a `prefer` package that satisfies `group`.
    fn preferred(&self, group: &[&Relation]) -> Option<&'a Record> {
        let p = self
            .prefer
            .iter()
            .find(|p| group.iter().any(|rel| satisfies_relation(p, rel)))?;
        let r = self.index.by_name.get(&p.name)?;
        r.iter()
            .find(|r| r.version == p.version)
            .filter(|r| !self.clashes(r))
    }

    /// The first candidate for `group` that can be marked.
    fn pick(&self, group: &[&Relation]) -> Option<&'a Record> {
        if let Some(r) = self.preferred(group) {
            return Some(r);
        }
        for rel in group {
            let real = self
                .index
                .by_name
                .get(&rel.name)
                .and_then(|l| l.iter().find(|c| satisfies(&c.version, &rel.version)));
            let provs = provider_order(self.index, &rel.name, &rel.version);
            let via = provs.iter().filter_map(|p| {
                self.index
                    .by_name
                    .get(p)?
                    .iter()
                    .find(|c| satisfies_relation(c, rel))
            });
            let usable = |c: &&Record| !self.clashes(c) && c.name != super::USRMERGE;
            if let Some(c) = real.into_iter().chain(via).find(usable) {
                return Some(c);
            }
        }
        None
    }

    fn walk(&mut self, r: &'a Record, depth: usize) {
        if depth > 200 {
            return;
        }
        let arch = self.index.arch.clone();
        for g in r.pre_depends.iter().chain(r.depends.iter()) {
            let group: Vec<&Relation> = g.into_iter().filter(|x| arch_ok(x, &arch)).collect();
            if group.is_empty() || self.met(&group) {
                continue;
            }
            if let Some(c) = self.pick(&group) {
                self.marked.insert(c.name.clone(), c);
                self.walk(c, depth + 1);
            }
        }
    }
}
