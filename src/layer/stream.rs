//! Normalizing a sorted stream of entries, in bounded memory.
//!
//! The rules of [`super::normalize`], applied to entries that arrive sorted
//! by path components (then by arrival), so that what they need is at hand:
//!
//! * duplicates of a path are adjacent: the first is kept, the others must
//!   not differ ([`super::difference`]), and a package may not ship a path
//!   twice (names that collide after normalization);
//! * a directory comes right before its contents: the chain of ancestors of
//!   the current entry is a stack, which is all the symlink-parent and
//!   not-a-directory checks need (with the symlinks of the layers below),
//!   and missing parents are emitted as they are found missing;
//! * hard links (few, kept in memory) are resolved before the pass: one
//!   pre-pass over the stream finds their targets, and the content moves to
//!   the first member of each group in sorted order.

use super::spool::{Item, Link, Raw, Source, cmp_paths};
use super::{Content, Entry, Kind, LayerError, difference};
use std::collections::{BTreeMap, BTreeSet};

/// A sorted stream that can be read more than once.
pub(crate) trait Sorted {
    fn sources(&self) -> &[Source];
    fn links(&self) -> &[Link];
    fn items(&self) -> Result<Box<dyn Iterator<Item = Result<Item, LayerError>> + '_>, LayerError>;
}

/// Where the normalized entries go.
pub(crate) type Emit<'a> = dyn FnMut(&Entry) -> Result<(), LayerError> + 'a;

/// What hard-link groups change: paths that take the group's content, and
/// paths that become links to the first member.
#[derive(Default)]
struct LinkPlan {
    content: BTreeMap<String, Entry>,
    relink: BTreeMap<String, String>,
}

/// Normalize `input` into `emit`; returns the symlinks of the layer, sorted.
pub(crate) fn normalize_sorted(
    input: &dyn Sorted,
    lower: &BTreeSet<String>,
    mtime: u64,
    emit: &mut Emit,
) -> Result<Vec<String>, LayerError> {
    let plan = link_plan(input)?;
    let mut w = Walker {
        lower,
        mtime,
        plan,
        stack: Vec::new(),
        symlinks: Vec::new(),
        emit,
    };
    let sources = input.sources();
    let mut cur: Option<(Item, Vec<(u32, bool)>)> = None;
    for item in input.items()? {
        let item = item?;
        match &mut cur {
            Some((kept, seen)) if kept.e.path == item.e.path => {
                same_path(sources, kept, seen, &item)?;
                seen.push((item.m.src, item.m.merged));
            }
            _ => {
                if let Some((kept, _)) = cur.take() {
                    w.entry(kept.e)?;
                }
                let seen = vec![(item.m.src, item.m.merged)];
                cur = Some((item, seen));
            }
        }
    }
    if let Some((kept, _)) = cur {
        w.entry(kept.e)?;
    }
    Ok(w.symlinks)
}

/// A later entry with the path of `kept`: a collision within a package, a
/// conflict between sources, or an identical duplicate (dropped).
fn same_path(
    sources: &[Source],
    kept: &Item,
    seen: &[(u32, bool)],
    item: &Item,
) -> Result<(), LayerError> {
    let src = &sources[item.m.src as usize];
    if let Some(pkg) = &src.package
        && seen.contains(&(item.m.src, item.m.merged))
    {
        let p = &item.e.path;
        let pre = match item.m.merged {
            true => p.strip_prefix("usr/").unwrap_or(p),
            false => p,
        };
        let entry = match &item.m.raw {
            Raw::Dot => format!("./{pre}"),
            Raw::DotSlash => format!("./{pre}/"),
            Raw::Other(s) => s.clone(),
        };
        return Err(LayerError::Hostile {
            origin: pkg.clone(),
            entry,
            reason: format!("a second entry for {pre:?} (names collide after normalization)"),
        });
    }
    if let Some(what) = difference(&kept.e, &item.e) {
        return Err(LayerError::Conflict {
            path: item.e.path.clone(),
            first: kept.e.origin.clone(),
            second: item.e.origin.clone(),
            what,
        });
    }
    Ok(())
}

/// The pass over unique entries in sorted order.
struct Walker<'a, 'b> {
    lower: &'a BTreeSet<String>,
    mtime: u64,
    plan: LinkPlan,
    /// The ancestors of the current entry present in the layer, outermost
    /// first, with whether each is a directory or a symlink.
    stack: Vec<(String, Kind)>,
    symlinks: Vec<String>,
    emit: &'a mut Emit<'b>,
}

impl Walker<'_, '_> {
    fn entry(&mut self, mut e: Entry) -> Result<(), LayerError> {
        self.stack.retain(|(p, _)| is_ancestor(p, &e.path));
        self.check_parents(&e)?;
        // Missing parents, outermost first.
        let ancestors: Vec<&str> = ancestors(&e.path).collect();
        for a in ancestors.into_iter().rev() {
            if !self.stack.iter().any(|(p, _)| p == a) {
                let d = Entry::dir(a, self.mtime, "imgforge");
                (self.emit)(&d)?;
                self.stack.push((a.to_string(), Kind::Dir));
            }
        }
        let kind = match &e.kind {
            Kind::Symlink(_) => Kind::Symlink(String::new()),
            Kind::Dir => Kind::Dir,
            _ => Kind::File,
        };
        if let Some(c) = self.plan.content.remove(&e.path) {
            e = c;
        } else if let Some(first) = self.plan.relink.remove(&e.path) {
            e.kind = Kind::Hardlink(first);
            e.size = 0;
            e.content = Content::None;
        }
        if matches!(e.kind, Kind::Symlink(_)) {
            self.symlinks.push(e.path.clone());
        }
        (self.emit)(&e)?;
        self.stack.push((e.path, kind));
        Ok(())
    }

    /// No entry below a symlink (of this layer or below), nor below a
    /// non-directory; nearest parent first, as `normalize` checks.
    fn check_parents(&self, e: &Entry) -> Result<(), LayerError> {
        for parent in ancestors(&e.path) {
            let here = self.stack.iter().find(|(p, _)| p == parent);
            let reason = if matches!(here, Some((_, Kind::Symlink(_))))
                || self.lower.contains(parent)
            {
                format!(
                    "its parent {parent:?} is a symlink; writing through it could escape the image root"
                )
            } else if matches!(here, Some((_, k)) if *k != Kind::Dir) {
                format!("its parent {parent:?} is not a directory")
            } else {
                continue;
            };
            return Err(LayerError::Hostile {
                origin: e.origin.clone(),
                entry: e.path.clone(),
                reason,
            });
        }
        Ok(())
    }
}

/// `a/b/c` -> `a/b`, `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut p = path;
    std::iter::from_fn(move || {
        let (parent, _) = p.rsplit_once('/')?;
        p = parent;
        Some(parent)
    })
}

fn is_ancestor(a: &str, p: &str) -> bool {
    p.len() > a.len() && p.starts_with(a) && p.as_bytes()[a.len()] == b'/'
}

/// What a target of hard links turned out to be in the pre-pass.
struct Target {
    /// The first entry with that path.
    holder: Option<Entry>,
    /// Some entry lies below it (a generated directory if it has no entry).
    has_children: bool,
    /// Sources that ship it.
    sources: BTreeSet<u32>,
}

/// Find the targets of the hard links and decide what moves where.
fn link_plan(input: &dyn Sorted) -> Result<LinkPlan, LayerError> {
    let links = input.links();
    if links.is_empty() {
        return Ok(LinkPlan::default());
    }
    let mut targets: BTreeMap<&str, Target> = links
        .iter()
        .map(|l| {
            let t = Target {
                holder: None,
                has_children: false,
                sources: BTreeSet::new(),
            };
            (l.target.as_str(), t)
        })
        .collect();
    for item in input.items()? {
        let item = item?;
        for a in ancestors(&item.e.path) {
            if let Some(t) = targets.get_mut(a) {
                t.has_children = true;
            }
        }
        if let Some(t) = targets.get_mut(item.e.path.as_str()) {
            t.sources.insert(item.m.src);
            t.holder.get_or_insert(item.e);
        }
    }
    check_own_package(input, &targets)?;
    group_links(input.sources(), links, &targets)
}

/// A package's hard links must point into the package itself.
fn check_own_package(
    input: &dyn Sorted,
    targets: &BTreeMap<&str, Target>,
) -> Result<(), LayerError> {
    for l in input.links() {
        let Some(pkg) = &input.sources()[l.src as usize].package else {
            continue;
        };
        if !targets[l.target.as_str()].sources.contains(&l.src) {
            return Err(LayerError::Hostile {
                origin: pkg.clone(),
                entry: l.path.clone(),
                reason: format!("hard link to {:?}, a path outside the package", l.target),
            });
        }
    }
    Ok(())
}

/// Group the kept hard links by target; each group's content goes to its
/// first member in sorted order, the others link to that one.
fn group_links(
    sources: &[Source],
    links: &[Link],
    targets: &BTreeMap<&str, Target>,
) -> Result<LinkPlan, LayerError> {
    // The kept link of each path: the first to arrive.
    let mut kept: BTreeMap<&str, &Link> = BTreeMap::new();
    for l in links {
        let k = kept.entry(l.path.as_str()).or_insert(l);
        if l.seq < k.seq {
            *k = l;
        }
    }
    let mut sorted: Vec<&Link> = kept.into_values().collect();
    sorted.sort_by(|a, b| cmp_paths(a.path.as_bytes(), b.path.as_bytes()));
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in &sorted {
        let t = &targets[l.target.as_str()];
        let reason = match &t.holder {
            Some(h) if h.kind == Kind::File => None,
            None if !t.has_children => Some("which is not in the layer"),
            _ => Some("which is not a regular file"),
        };
        if let Some(r) = reason {
            return Err(LayerError::Hostile {
                origin: sources[l.src as usize].origin.clone(),
                entry: l.path.clone(),
                reason: format!("hard link to {:?}, {r}", l.target),
            });
        }
        groups.entry(l.target.as_str()).or_default().push(&l.path);
    }
    let mut plan = LinkPlan::default();
    for (holder, members) in groups {
        let first = members
            .iter()
            .copied()
            .chain(std::iter::once(holder))
            .min_by(|a, b| cmp_paths(a.as_bytes(), b.as_bytes()))
            .expect("non-empty");
        if first == holder {
            continue;
        }
        let h = targets[holder].holder.clone().expect("checked");
        let moved = Entry {
            path: first.to_string(),
            ..h
        };
        plan.content.insert(first.to_string(), moved);
        for m in members.into_iter().chain(std::iter::once(holder)) {
            if m != first {
                plan.relink.insert(m.to_string(), first.to_string());
            }
        }
    }
    Ok(plan)
}
