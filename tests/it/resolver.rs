//! The resolver on synthetic indexes, and dpkg version ordering.

use imgforge::pkgindex::{self as index, Index, Origin};
use imgforge::resolve::solver::{self, Request, ResolveError};
use std::collections::BTreeMap;
use std::path::Path;

fn index(stanzas: &str) -> Index {
    let mut idx = Index::new("amd64");
    let mut text = String::new();
    for (i, s) in stanzas.trim().split("\n\n").enumerate() {
        text.push_str(s.trim());
        text.push_str(&format!(
            "\nArchitecture: amd64\nFilename: pool/{i}.deb\nSize: 1\nSHA256: {}\n\n",
            "0".repeat(64)
        ));
    }
    index::add_packages_text(
        &mut idx,
        &text,
        Path::new("Packages"),
        Origin::Url("http://127.0.0.1".into()),
    )
    .unwrap();
    idx
}

fn pins(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn solve(idx: &Index, p: &[(&str, &str)]) -> Result<Vec<String>, ResolveError> {
    let pins = pins(p);
    let r = solver::resolve(
        idx,
        &Request {
            label: "test.toml".into(),
            pins: &pins,
            installed: &[],
            prefer: &[],
        },
    )?;
    Ok(r.iter()
        .map(|c| format!("{}={}", c.record.name, c.record.version))
        .collect())
}

#[test]
fn closure_follows_depends_and_pre_depends_not_recommends() {
    let idx = index(
        "Package: app\nVersion: 1\nDepends: lib (>= 2)\nPre-Depends: pre\nRecommends: extra\n\n\
         Package: lib\nVersion: 2\n\n\
         Package: lib\nVersion: 3\n\n\
         Package: pre\nVersion: 1\n\n\
         Package: extra\nVersion: 1",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "lib=3", "pre=1"]
    );
}

#[test]
fn version_constraints_use_dpkg_order() {
    let idx = index(
        "Package: app\nVersion: 1\nDepends: lib (<< 2.0~rc1)\n\n\
         Package: lib\nVersion: 2.0~beta\n\n\
         Package: lib\nVersion: 2.0\n\n\
         Package: lib\nVersion: 1:0.1",
    );
    // 1:0.1 > 2.0 (epoch) and 2.0 > 2.0~rc1: only 2.0~beta fits.
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "lib=2.0~beta"]
    );
}

#[test]
fn alternatives_are_tried_in_order_and_selected_ones_are_preferred() {
    let idx = index(
        "Package: app\nVersion: 1\nDepends: first | second\n\n\
         Package: first\nVersion: 1\n\n\
         Package: second\nVersion: 1",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "first=1"]
    );
    // With `second` pinned, the dependency is already satisfied.
    assert_eq!(
        solve(&idx, &[("app", "1"), ("second", "1")]).unwrap(),
        vec!["app=1", "second=1"]
    );
    // A missing first alternative falls through to the second.
    let idx =
        index("Package: app\nVersion: 1\nDepends: ghost | second\n\nPackage: second\nVersion: 1");
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "second=1"]
    );
}

#[test]
fn providers_are_chosen_in_apts_order_not_by_name() {
    // gawk sorts first, but mawk is Priority: required (apt's rule).
    let idx = index(
        "Package: base\nVersion: 1\nPre-Depends: awk\n\n\
         Package: gawk\nVersion: 1\nPriority: optional\nProvides: awk\n\n\
         Package: mawk\nVersion: 1\nPriority: required\nProvides: awk\n\n\
         Package: original-awk\nVersion: 1\nPriority: optional\nProvides: awk",
    );
    let r = solve(&idx, &[("base", "1")]).unwrap();
    assert_eq!(r, vec!["base=1", "mawk=1"], "the higher priority provider");
    let r = solve(&idx, &[("base", "1"), ("gawk", "1")]).unwrap();
    assert_eq!(r, vec!["base=1", "gawk=1"], "a pinned provider wins");
    // Equal priority: apt prefers the name its cache met last (not name order).
    let idx = index(
        "Package: app\nVersion: 1\nDepends: api\n\n\
         Package: zz-first\nVersion: 1\nPriority: optional\nProvides: api\n\n\
         Package: aa-later\nVersion: 1\nPriority: optional\nProvides: api",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["aa-later=1", "app=1"]
    );
    let idx = index(
        "Package: app\nVersion: 1\nDepends: api\n\n\
         Package: aa-later\nVersion: 1\nPriority: optional\nProvides: api\n\n\
         Package: zz-first\nVersion: 1\nPriority: optional\nProvides: api",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "zz-first=1"]
    );
    // A real package of the virtual's name comes before any provider.
    let idx = index(
        "Package: app\nVersion: 1\nDepends: awk\n\n\
         Package: mawk\nVersion: 1\nPriority: required\nProvides: awk\n\n\
         Package: awk\nVersion: 1\nPriority: optional",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "awk=1"]
    );
}

#[test]
fn provider_reason_names_the_rule() {
    let idx = index(
        "Package: base\nVersion: 1\nPre-Depends: awk\n\n\
         Package: gawk\nVersion: 1\nPriority: optional\nProvides: awk\n\n\
         Package: mawk\nVersion: 1\nPriority: required\nProvides: awk",
    );
    let p = pins(&[("base", "1")]);
    let r = solver::resolve(
        &idx,
        &Request {
            label: "t".into(),
            pins: &p,
            installed: &[],
            prefer: &[],
        },
    )
    .unwrap();
    let reasons: Vec<String> = r
        .iter()
        .map(|c| format!("{}: {}", c.record.name, c.reason))
        .collect();
    insta::assert_snapshot!("provider_reason", reasons.join("\n"));
}

#[test]
fn backtracks_out_of_an_alternative_that_later_conflicts() {
    // The bsd-mailx + postfix-pgsql shape: the first alternative (exim)
    // conflicts with the MTA another pin needs; apt ends with postfix only.
    let idx = index(
        "Package: mailx\nVersion: 1\nDepends: default-mta | mail-transport-agent\n\n\
         Package: exim\nVersion: 1\nPriority: standard\nProvides: default-mta, mail-transport-agent\nConflicts: mail-transport-agent\n\n\
         Package: postfix\nVersion: 1\nPriority: optional\nProvides: mail-transport-agent\nConflicts: mail-transport-agent\n\n\
         Package: postfix-pgsql\nVersion: 1\nDepends: postfix (= 1)",
    );
    assert_eq!(
        solve(&idx, &[("mailx", "1"), ("postfix-pgsql", "1")]).unwrap(),
        vec!["mailx=1", "postfix=1", "postfix-pgsql=1"]
    );
    assert_eq!(
        solve(&idx, &[("mailx", "1")]).unwrap(),
        vec!["exim=1", "mailx=1"]
    );
    // Deeper: the first alternative's own dependency conflicts with a pin,
    // found only after choosing it.
    let idx = index(
        "Package: app\nVersion: 1\nDepends: fast | slow\n\n\
         Package: fast\nVersion: 1\nDepends: helper\n\n\
         Package: helper\nVersion: 1\nBreaks: other (<< 2)\n\n\
         Package: slow\nVersion: 1\n\n\
         Package: other\nVersion: 1",
    );
    assert_eq!(
        solve(&idx, &[("app", "1"), ("other", "1")]).unwrap(),
        vec!["app=1", "other=1", "slow=1"]
    );
}

#[test]
fn a_provider_required_later_satisfies_an_earlier_dependency() {
    // php-redis: `php-igbinary` is a real package *and* provided by
    // php8.2-igbinary, which php8.2-redis (written first) needs anyway: apt
    // walks php8.2-redis first and then needs nothing more. A solver
    // deciding in its own order would add the real php-igbinary.
    let deps = "php8.2-redis, php-igbinary";
    {
        let idx = index(&format!(
            "Package: php-redis\nVersion: 1\nDepends: {deps}\n\n\
             Package: php8.2-redis\nVersion: 1\nDepends: php8.2-igbinary\n\n\
             Package: php8.2-igbinary\nVersion: 1\nProvides: php-igbinary\n\n\
             Package: php-igbinary\nVersion: 1\nDepends: php8.2-igbinary"
        ));
        assert_eq!(
            solve(&idx, &[("php-redis", "1")]).unwrap(),
            vec!["php-redis=1", "php8.2-igbinary=1", "php8.2-redis=1"],
            "{deps}"
        );
    }
}

#[test]
fn versioned_provides() {
    // A versioned dependency on a virtual needs a versioned Provides that fits.
    let idx = index(
        "Package: app\nVersion: 1\nDepends: libz1 (>= 2)\n\n\
         Package: old\nVersion: 1\nProvides: libz1 (= 1)\n\n\
         Package: plain\nVersion: 1\nProvides: libz1\n\n\
         Package: zlib\nVersion: 1\nProvides: libz1 (= 2)",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "zlib=1"]
    );
    // The provided version, not the provider's, is what is compared; and a
    // higher provider version that no longer provides it is skipped.
    let idx = index(
        "Package: app\nVersion: 1\nDepends: api (>= 3)\n\n\
         Package: impl\nVersion: 9\n\n\
         Package: impl\nVersion: 5\nProvides: api (= 3)",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "impl=5"]
    );
    // A versioned Breaks on a virtual hits only matching versioned Provides.
    let idx = index(
        "Package: app\nVersion: 1\nDepends: api\nBreaks: api (<< 2)\n\n\
         Package: v1\nVersion: 1\nPriority: required\nProvides: api (= 1)\n\n\
         Package: v2\nVersion: 1\nPriority: optional\nProvides: api (= 2)",
    );
    assert_eq!(solve(&idx, &[("app", "1")]).unwrap(), vec!["app=1", "v2=1"]);
}

#[test]
fn any_qualifiers_are_accepted() {
    let idx = index("Package: app\nVersion: 1\nDepends: perl:any\n\nPackage: perl\nVersion: 5");
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "perl=5"]
    );
}

#[test]
fn conflicting_pins_are_explained_with_both_chains() {
    let idx = index(
        "Package: web\nVersion: 1\nDepends: tool\n\n\
         Package: tool\nVersion: 1\nConflicts: legacy\n\n\
         Package: app\nVersion: 1\nDepends: legacy | modern\n\n\
         Package: legacy\nVersion: 1\n\n\
         Package: modern\nVersion: 1\nConflicts: tool\n\n\
         Package: c\nVersion: 1\nBreaks: d (<< 2)\n\n\
         Package: d\nVersion: 1\n\n\
         Package: d\nVersion: 2",
    );
    let e = solve(&idx, &[("web", "1"), ("app", "1")]).unwrap_err();
    assert!(matches!(e, ResolveError::Unsolvable { .. }), "{e}");
    insta::assert_snapshot!("conflict_both_chains", e.to_string());
    let e = solve(&idx, &[("c", "1"), ("d", "1")]).unwrap_err();
    insta::assert_snapshot!("breaks_pin_hint", e.to_string());
}

#[test]
fn an_exact_version_chain_suggests_the_sibling_pin() {
    // openssh-server pinned one update behind openssh-sftp-server: both
    // need openssh-client at their own version.
    let idx = index(
        "Package: server\nVersion: 1.0-1\nDepends: client (= 1.0-1)\n\n\
         Package: server\nVersion: 1.0-2\nDepends: client (= 1.0-2)\n\n\
         Package: sftp\nVersion: 1.0-1\nDepends: client (= 1.0-1)\n\n\
         Package: sftp\nVersion: 1.0-2\nDepends: client (= 1.0-2)\n\n\
         Package: client\nVersion: 1.0-1\n\n\
         Package: client\nVersion: 1.0-2",
    );
    let e = solve(&idx, &[("server", "1.0-1"), ("sftp", "1.0-2")]).unwrap_err();
    let s = e.to_string();
    insta::assert_snapshot!("exact_chain_sibling_pin", s);
    assert!(s.contains("pin server = \"1.0-2\""), "{s}");
    assert!(s.contains("pin sftp = \"1.0-1\""), "{s}");
}

#[test]
fn unsatisfiable_dependencies_print_the_chain() {
    let idx = index(
        "Package: app\nVersion: 1\nDepends: mid\n\n\
         Package: mid\nVersion: 1\nDepends: leaf (>= 3)\n\n\
         Package: leaf\nVersion: 2",
    );
    let e = solve(&idx, &[("app", "1")]).unwrap_err();
    let s = e.to_string();
    insta::assert_snapshot!("unsatisfiable_chain", s);
    assert!(
        s.contains("test.toml -> app 1 -> mid 1 -> leaf (>= 3)"),
        "{s}"
    );
}

#[test]
fn a_pin_missing_from_the_source_lists_available_versions() {
    let idx = index("Package: lib\nVersion: 1.0\n\nPackage: lib\nVersion: 1.1");
    let e = solve(&idx, &[("lib", "2.0")]).unwrap_err();
    insta::assert_snapshot!("pin_not_found", e.to_string());
}

#[test]
fn installed_packages_satisfy_and_are_not_repeated() {
    let idx = index("Package: app\nVersion: 1\nDepends: libc\n\nPackage: libc\nVersion: 2");
    let installed: Vec<_> = idx.by_name["libc"].clone();
    let p = pins(&[("app", "1")]);
    let r = solver::resolve(
        &idx,
        &Request {
            label: "x".into(),
            pins: &p,
            installed: &installed,
            prefer: &[],
        },
    )
    .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].record.name, "app");
}

mod version_order {
    use debversion::Version;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn version() -> impl Strategy<Value = String> {
        (
            prop::option::of(0u8..3),
            "[0-9][0-9a-z.+~]{0,6}",
            prop::option::of("[0-9a-z.+~]{1,5}"),
        )
            .prop_map(|(e, up, rev)| {
                let mut s = String::new();
                if let Some(e) = e {
                    s.push_str(&format!("{e}:"));
                }
                s.push_str(&up);
                if let Some(r) = rev {
                    s.push('-');
                    s.push_str(&r);
                }
                s
            })
    }

    fn dpkg_cmp(a: &str, b: &str) -> Option<Ordering> {
        let lt = std::process::Command::new("dpkg")
            .args(["--compare-versions", a, "lt", b])
            .status()
            .ok()?;
        let eq = std::process::Command::new("dpkg")
            .args(["--compare-versions", a, "eq", b])
            .status()
            .ok()?;
        Some(if eq.success() {
            Ordering::Equal
        } else if lt.success() {
            Ordering::Less
        } else {
            Ordering::Greater
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn ordering_is_a_total_order(a in version(), b in version(), c in version()) {
            let (va, vb, vc): (Version, Version, Version) = (a.parse().unwrap(), b.parse().unwrap(), c.parse().unwrap());
            prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
            if va <= vb && vb <= vc { prop_assert!(va <= vc); }
        }

        #[test]
        fn tilde_sorts_before_everything(a in "[0-9][0-9a-z.]{0,5}") {
            let plain: Version = a.parse().unwrap();
            let tilde: Version = format!("{a}~rc1").parse().unwrap();
            let epoch: Version = format!("1:{a}").parse().unwrap();
            prop_assert!(tilde < plain);
            prop_assert!(plain < epoch);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// dpkg itself is the oracle when it is installed (it is on Debian).
        #[test]
        fn ordering_matches_dpkg(a in version(), b in version()) {
            let va: Version = a.parse().unwrap();
            let vb: Version = b.parse().unwrap();
            if let Some(want) = dpkg_cmp(&a, &b) {
                prop_assert_eq!(va.cmp(&vb), want, "{} vs {}", a, b);
            }
        }
    }
}

/// The resolver against the real bookworm indexes, compared with what apt
/// installs from the same indexes (`tests/data/apt-closures`, made by
/// `make.sh` there).
mod bookworm {
    use super::super::common;
    use imgforge::pkgindex::{self as index, Index, Origin};
    use imgforge::resolve::solver::{self, Request};
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Read;
    use std::sync::OnceLock;

    fn load() -> Option<&'static Index> {
        static IDX: OnceLock<Option<Index>> = OnceLock::new();
        IDX.get_or_init(|| {
            let files = common::debian_index()?;
            let mut idx = Index::new("amd64");
            for f in files {
                let mut text = String::new();
                liblzma::read::XzDecoder::new(std::fs::File::open(&f).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                index::add_packages_text(&mut idx, &text, &f, Origin::Url(String::new())).unwrap();
            }
            Some(idx)
        })
        .as_ref()
    }

    /// (requested packages, apt's closure as `name version` lines).
    fn expected(set: &str) -> (Vec<String>, BTreeSet<String>) {
        let p = common::root().join(format!("tests/data/apt-closures/{set}.txt"));
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines = text.lines();
        let head = lines.next().unwrap();
        let pkgs = head
            .split("--no-install-recommends ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        (pkgs, lines.map(str::to_string).collect())
    }

    /// imgforge's closure when each requested package is pinned to its
    /// candidate (highest) version, as apt installs it.
    fn ours(idx: &Index, pkgs: &[String]) -> Result<BTreeSet<String>, String> {
        let pins: BTreeMap<String, String> = pkgs
            .iter()
            .map(|p| (p.clone(), idx.by_name[p][0].version.to_string()))
            .collect();
        let req = Request {
            label: "test".into(),
            pins: &pins,
            installed: &[],
            prefer: &[],
        };
        let r = solver::resolve(idx, &req).map_err(|e| e.to_string())?;
        Ok(r.iter()
            .map(|c| format!("{} {}", c.record.name, c.record.version))
            .collect())
    }

    /// Packages of apt's answer that nothing in it depends on and that were
    /// not requested: left over from a branch apt's repair step undid
    /// (`apt-get autoremove` would remove them). Computed from the index.
    fn orphans(idx: &Index, pkgs: &[String], apt: &BTreeSet<String>) -> BTreeSet<String> {
        let recs: Vec<_> = apt
            .iter()
            .map(|l| {
                let (n, v) = l.split_once(' ').unwrap();
                idx.get(n, &v.parse().unwrap()).unwrap()
            })
            .collect();
        recs.iter()
            .filter(|x| !pkgs.contains(&x.name))
            .filter(|x| {
                !recs.iter().any(|r| {
                    r.pre_depends.iter().chain(r.depends.iter()).any(|g| {
                        g.into_iter().any(|rel| {
                            (rel.name == x.name && solver::satisfies(&x.version, &rel.version))
                                || x.provides.iter().flatten().any(|p| p.name == rel.name)
                        })
                    })
                })
            })
            .map(|x| format!("{} {}", x.name, x.version))
            .collect()
    }

    /// apt's closures were recorded on an empty root, where apt takes
    /// usrmerge for `usrmerge | usr-is-merged`. On an installed Debian
    /// system (what imgforge resolves for: the Essential set and
    /// usr-is-merged are there) apt finds that alternative met by
    /// usr-is-merged: the expected closure is apt's with usrmerge replaced
    /// by usr-is-merged, less what only usrmerge needed (what the requested
    /// packages no longer reach through the set's dependencies).
    fn on_installed_system(
        idx: &Index,
        pkgs: &[String],
        apt: BTreeSet<String>,
    ) -> BTreeSet<String> {
        let Some(um) = apt.iter().find(|l| l.starts_with("usrmerge ")).cloned() else {
            return apt;
        };
        let mut set = apt;
        set.remove(&um);
        set.insert(format!(
            "usr-is-merged {}",
            idx.by_name["usr-is-merged"][0].version
        ));
        let recs: Vec<_> = set
            .iter()
            .map(|l| {
                let (n, v) = l.split_once(' ').unwrap();
                idx.get(n, &v.parse().unwrap()).unwrap()
            })
            .collect();
        let mut reached: BTreeSet<String> = pkgs.iter().cloned().collect();
        let mut todo: Vec<_> = recs.iter().filter(|r| pkgs.contains(&r.name)).collect();
        while let Some(r) = todo.pop() {
            for rel in r.pre_depends.iter().chain(r.depends.iter()).flatten() {
                for x in &recs {
                    let hit = (rel.name == x.name && solver::satisfies(&x.version, &rel.version))
                        || x.provides.iter().flatten().any(|p| p.name == rel.name);
                    if hit && reached.insert(x.name.clone()) {
                        todo.push(x);
                    }
                }
            }
        }
        recs.iter()
            .filter(|r| reached.contains(&r.name))
            .map(|r| format!("{} {}", r.name, r.version))
            .collect()
    }

    /// Compare one set; returns the printed row and whether it matched
    /// apt's answer (without apt's orphans).
    fn compare(idx: &Index, set: &str) -> (String, bool) {
        let (pkgs, apt) = expected(set);
        let apt = on_installed_system(idx, &pkgs, apt);
        let orphans = orphans(idx, &pkgs, &apt);
        let want: BTreeSet<String> = apt.difference(&orphans).cloned().collect();
        let got = match ours(idx, &pkgs) {
            Ok(g) => g,
            Err(e) => return (format!("{set}: imgforge failed: {e}"), false),
        };
        let only_ours: Vec<_> = got.difference(&want).cloned().collect();
        let only_apt: Vec<_> = want.difference(&got).cloned().collect();
        let row = format!(
            "| {} | {} | {} | {} | {} | {} |",
            pkgs.join(" "),
            got.len(),
            apt.len(),
            if orphans.is_empty() {
                "-".into()
            } else {
                orphans.iter().cloned().collect::<Vec<_>>().join(", ")
            },
            if only_ours.is_empty() {
                "-".into()
            } else {
                only_ours.join(", ")
            },
            if only_apt.is_empty() {
                "-".into()
            } else {
                only_apt.join(", ")
            },
        );
        (row, only_ours.is_empty() && only_apt.is_empty())
    }

    needs! { [has_fixture_debian_index] "needs ../shared/debian-index";
        fn issue_cases_match_apt() {
            let Some(idx) = load() else { return };
            for set in ["php-redis", "mailx-postfix-pgsql", "base-files"] {
                let (row, same) = compare(idx, set);
                println!("{row}");
                assert!(same, "{set} differs from apt: {row}");
            }
        }
    }

    needs! { [has_fixture_debian_index] "needs ../shared/debian-index";
        fn package_sets_match_apt() {
            let Some(idx) = load() else { return };
            let sets = std::fs::read_to_string(common::root().join("tests/data/apt-closures/sets"))
                .unwrap();
            println!(
                "| packages | imgforge | apt | apt's orphans | only imgforge | only apt |\n|---|---|---|---|---|---|"
            );
            let mut differ = vec![];
            for line in sets
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                let set = line.split_whitespace().next().unwrap();
                let (row, same) = compare(idx, set);
                println!("{row}");
                if !same {
                    differ.push(set.to_string());
                }
            }
            assert!(differ.is_empty(), "differ from apt: {differ:?}");
        }
    }
}

needs! { [has_fixture_debian] "needs ../shared/debian";
    fn lock_explain_prints_the_chain_from_the_recipe() {
        let Some(mirror) = super::common::examples_mirror() else {
            return;
        };
        let out = super::common::run(
            super::common::imgforge()
                .current_dir(super::common::root())
                .args([
                    "lock",
                    "recipes",
                    "--no-apt",
                    "--locked",
                    "-q",
                    "--explain",
                    "iproute2",
                    "--mirror",
                ])
                .arg(&mirror),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", super::common::text(&out));
        insta::assert_snapshot!("lock_explain_iproute2", stdout);
        let out = super::common::run(
            super::common::imgforge()
                .current_dir(super::common::root())
                .args([
                    "lock",
                    "recipes",
                    "--no-apt",
                    "--locked",
                    "-q",
                    "--explain",
                    "nosuch",
                    "--mirror",
                ])
                .arg(&mirror),
        );
        assert!(!out.status.success());
        assert!(super::common::text(&out).contains("nosuch is in no image"));
    }
}

/// `usrmerge | usr-is-merged` (init-system-helpers): usrmerge converts a
/// split-/usr root and is never selected; with the toolset preferred (as
/// apt on an installed Debian system finds the alternative met there),
/// an alternative the toolset has is taken first and ships.
#[test]
fn usrmerge_is_never_selected_and_the_toolset_is_preferred_among_alternatives() {
    let idx = index(
        "Package: init-system-helpers\nVersion: 1\nDepends: usrmerge | usr-is-merged\n\n\
         Package: usrmerge\nVersion: 37\n\n\
         Package: usr-is-merged\nVersion: 37\n\n\
         Package: app\nVersion: 1\nDepends: mawk | gawk\n\n\
         Package: mawk\nVersion: 1\n\n\
         Package: gawk\nVersion: 1",
    );
    assert_eq!(
        solve(&idx, &[("init-system-helpers", "1")]).unwrap(),
        vec!["init-system-helpers=1", "usr-is-merged=37"]
    );
    assert!(solve(&idx, &[("usrmerge", "37")]).is_err());
    let prefer: Vec<_> = idx.by_name["gawk"].clone();
    let pins = pins(&[("app", "1")]);
    let r = solver::resolve(
        &idx,
        &Request {
            label: "test.toml".into(),
            pins: &pins,
            installed: &[],
            prefer: &prefer,
        },
    )
    .unwrap();
    let got: Vec<String> = r.iter().map(|c| c.record.id()).collect();
    assert_eq!(got, vec!["app=1", "gawk=1"], "the toolset's gawk, not mawk");
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "mawk=1"]
    );
}
