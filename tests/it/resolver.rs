//! The resolver on synthetic indexes, and dpkg version ordering.

use imgforge::resolve::index::{self, Index, Origin};
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
fn virtual_packages_resolve_through_provides_deterministically() {
    let idx = index(
        "Package: base\nVersion: 1\nPre-Depends: awk\n\n\
         Package: mawk\nVersion: 1\nProvides: awk\n\n\
         Package: gawk\nVersion: 1\nProvides: awk",
    );
    let r = solve(&idx, &[("base", "1")]).unwrap();
    assert_eq!(r, vec!["base=1", "gawk=1"], "first provider by name");
    let r = solve(&idx, &[("base", "1"), ("mawk", "1")]).unwrap();
    assert_eq!(r, vec!["base=1", "mawk=1"], "a pinned provider wins");
    // Versioned dependency on a virtual needs a versioned Provides.
    let idx = index(
        "Package: app\nVersion: 1\nDepends: libz1 (>= 1)\n\n\
         Package: zlib\nVersion: 1\nProvides: libz1 (= 2)",
    );
    assert_eq!(
        solve(&idx, &[("app", "1")]).unwrap(),
        vec!["app=1", "zlib=1"]
    );
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
fn conflicts_and_breaks_are_errors() {
    let idx = index(
        "Package: a\nVersion: 1\nConflicts: b\n\n\
         Package: b\nVersion: 1\n\n\
         Package: c\nVersion: 1\nBreaks: d (<< 2)\n\n\
         Package: d\nVersion: 1",
    );
    let e = solve(&idx, &[("a", "1"), ("b", "1")]).unwrap_err();
    assert!(matches!(e, ResolveError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("a 1 conflicts with b"), "{e}");
    let e = solve(&idx, &[("c", "1"), ("d", "1")]).unwrap_err();
    assert!(e.to_string().contains("c 1 breaks d (<< 2)"), "{e}");
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
