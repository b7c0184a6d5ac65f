//! Layering by source package: which packages share a layer.
//!
//! Packages built from one source package (libssl3 and openssl from
//! `openssl`) are updated together, so they form one group, and a security
//! update of one source changes only its group's layer. When an image has
//! more groups than its layer budget allows, the largest groups (by the
//! `.deb` sizes in the lock; ties by source name) keep a layer of their own
//! and every other group shares one last layer. Groups are ordered by
//! source name, the shared one last. Nothing here depends on anything but
//! the lock, so the grouping is the same on every machine, and the same
//! packages on the same base make byte-identical layers in every image.

use std::collections::BTreeMap;

/// A package as grouping sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Source package (the binary's own name when the index names none).
    pub source: String,
    /// Size of the `.deb`.
    pub size: u64,
}

/// One layer's packages, sorted by name, with a label for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The source package, or `"(others)"` for the shared layer.
    pub label: String,
    pub members: Vec<String>,
}

/// Split `members` into at most `cap` (at least 1) groups.
pub fn group(members: &[Member], cap: usize) -> Vec<Group> {
    let cap = cap.max(1);
    let mut by_source: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for m in members {
        let g = by_source.entry(m.source.as_str()).or_default();
        g.0 += m.size;
        g.1.push(m.name.as_str());
    }
    let mut ranked: Vec<(&str, u64)> = by_source.iter().map(|(s, (n, _))| (*s, *n)).collect();
    // Largest first; equal sizes by name, so the order is total.
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let own: usize = if ranked.len() <= cap {
        ranked.len()
    } else {
        cap - 1
    };
    let mut keep: Vec<&str> = ranked[..own].iter().map(|r| r.0).collect();
    keep.sort();
    let mut out: Vec<Group> = keep
        .iter()
        .map(|s| Group {
            label: s.to_string(),
            members: sorted(&by_source[s].1),
        })
        .collect();
    let rest: Vec<&str> = ranked[own..]
        .iter()
        .flat_map(|r| by_source[r.0].1.iter().copied())
        .collect();
    if !rest.is_empty() {
        out.push(Group {
            label: "(others)".into(),
            members: sorted(&rest),
        });
    }
    out
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Package-group layers the base may use under `budget` layers per image:
/// half the budget, less the base's other layers (root, files,
/// configuration), at least one.
pub fn base_cap(budget: usize) -> usize {
    (budget / 2).saturating_sub(3).max(1)
}

/// Package-group layers an image may use: what the base and the image's
/// other layers (`fixed`: files, configuration, artifacts) leave of the
/// budget, at least one.
pub fn image_cap(budget: usize, base_layers: usize, fixed: usize) -> usize {
    budget.saturating_sub(base_layers + fixed).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, source: &str, size: u64) -> Member {
        Member {
            name: name.into(),
            source: source.into(),
            size,
        }
    }

    fn labels(g: &[Group]) -> Vec<&str> {
        g.iter().map(|g| g.label.as_str()).collect()
    }

    #[test]
    fn binaries_of_one_source_share_a_layer() {
        let g = group(
            &[
                m("openssl", "openssl", 5),
                m("libssl3", "openssl", 9),
                m("zlib1g", "zlib", 1),
            ],
            16,
        );
        assert_eq!(labels(&g), ["openssl", "zlib"]);
        assert_eq!(g[0].members, ["libssl3", "openssl"]);
    }

    #[test]
    fn over_budget_the_largest_keep_their_layer_and_the_rest_share_one() {
        let ms = [
            m("a", "a", 10),
            m("b", "b", 30),
            m("c", "c", 20),
            m("d", "d", 5),
        ];
        let g = group(&ms, 3);
        assert_eq!(labels(&g), ["b", "c", "(others)"]);
        assert_eq!(g[2].members, ["a", "d"]);
        assert_eq!(group(&ms, 1).len(), 1);
        assert_eq!(group(&ms, 0).len(), 1, "a cap of 0 still makes one layer");
    }

    #[test]
    fn grouping_ignores_input_order_and_ties_break_by_name() {
        let mut ms = vec![m("x", "x", 7), m("y", "y", 7), m("z", "z", 7)];
        let a = group(&ms, 2);
        ms.reverse();
        assert_eq!(a, group(&ms, 2));
        assert_eq!(labels(&a), ["x", "(others)"]);
    }

    #[test]
    fn an_update_inside_a_group_moves_no_other_package() {
        let before = group(&[m("libssl3", "openssl", 100), m("zlib1g", "zlib", 10)], 16);
        let after = group(&[m("libssl3", "openssl", 101), m("zlib1g", "zlib", 10)], 16);
        assert_eq!(before, after);
    }

    #[test]
    fn caps_stay_within_the_budget() {
        let base = 1 + base_cap(16) + 1 + 1;
        assert!(base + image_cap(16, base, 3) + 3 <= 16);
        assert_eq!(base_cap(2), 1);
        assert_eq!(image_cap(4, 8, 3), 1);
    }
}
