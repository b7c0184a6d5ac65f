//! License detection: score against the fixture answer key, the Debian→SPDX
//! name table, and DEP-5 edge cases on in-memory copyright files.

use crate::common::*;
use imgforge::sbom::license::{
    self, DetectionMethod, LicenseFinding, ReviewFlag, Shipped, comparable_expression,
    evaluate_dep5, evaluate_prose,
};
use imgforge::sbom::names::{translate_line, translate_name};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Package name → .deb path for the whole fixture pool.
fn pool(fixture: &std::path::Path) -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(fixture.join("pool")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if let Some(pkg) = name.strip_suffix(".deb").and_then(|n| n.split('_').next()) {
            m.insert(pkg.to_string(), p);
        }
    }
    m
}

/// `GPL-2.0-only` → (`GPL-2.0`, "only").
fn gnu_variant(term: &str) -> Option<(String, &'static str)> {
    let id = term.split(' ').next()?;
    if let Some(b) = id.strip_suffix("-only") {
        Some((b.to_string(), "only"))
    } else {
        id.strip_suffix("-or-later")
            .map(|b| (b.to_string(), "or-later"))
    }
}

#[test]
fn license_score_against_answer_key() {
    let (Some(fx), Some(answers)) = (fixture(), license_answers()) else {
        return;
    };
    let avail = pool(&fx);
    let tsv = std::fs::read_to_string(answers).unwrap();
    let mut total = 0;
    let mut good = 0;
    let mut wrong_variant = Vec::new();
    for line in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (pkg, expected) = (cols[0], cols[3]);
        let deb = avail
            .get(pkg)
            .unwrap_or_else(|| panic!("{pkg} not in pool"));
        let f = license::detect_deb(deb, &avail).unwrap();
        let got = f.expression.clone().unwrap_or_else(|| "NOASSERTION".into());
        let ok = f.expression.is_some()
            && comparable_expression(&got).unwrap() == comparable_expression(expected).unwrap();
        total += 1;
        if ok {
            good += 1;
        }
        println!(
            "{} {pkg:24} got={got}\n{:27}exp={expected} [{}; flags: {}]",
            if ok { "OK  " } else { "MISS" },
            "",
            f.method.label(),
            f.flags
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        // No wrong -only / -or-later variant of an expected id.
        let exp_terms = license::expression_terms(expected);
        for t in license::expression_terms(&got) {
            let Some((base, var)) = gnu_variant(&t) else {
                continue;
            };
            for e in &exp_terms {
                if let Some((eb, ev)) = gnu_variant(e) {
                    if eb == base && ev != var && !exp_terms.contains(&t) {
                        wrong_variant.push(format!("{pkg}: got {t}, expected {e}"));
                    }
                }
            }
        }
    }
    println!("license score: {good}/{total}");
    assert!(
        wrong_variant.is_empty(),
        "wrong GNU variants: {wrong_variant:?}"
    );
    assert!(
        total == 19 && good >= 18,
        "score {good}/{total} below 18/19"
    );
}

#[test]
fn symlinked_doc_dir_is_followed_and_recorded() {
    let Some(fx) = fixture() else { return };
    let avail = pool(&fx);
    let f = license::detect_deb(&avail["libstdc++6"], &avail).unwrap();
    let (pkg, link) = f.followed_symlink.clone().expect("followed");
    assert_eq!(pkg, "gcc-12-base");
    assert!(
        link.contains("usr/share/doc/libstdc++6 -> gcc-12-base"),
        "{link}"
    );
    // Two hops: libctf0 -> libbinutils -> binutils-common.
    let f = license::detect_deb(&avail["libctf0"], &avail).unwrap();
    assert_eq!(f.followed_symlink.unwrap().0, "binutils-common");
    assert!(f.copyright_text.is_some());
}

#[test]
fn debian_names_translate_to_spdx() {
    let cases = [
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("gpl-3+", "GPL-3.0-or-later"),
        ("GPL", "GPL-1.0-only"),
        ("GPL-1+", "GPL-1.0-or-later"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("Expat", "MIT"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("bsd-2-clause", "BSD-2-Clause"),
        ("BSD-4-clause-UC", "BSD-4-Clause-UC"),
        ("GFDL-NIV-1.3+", "GFDL-1.3-no-invariants-or-later"),
        ("Artistic", "Artistic-1.0-Perl"),
        ("Perl", "GPL-1.0-or-later OR Artistic-1.0-Perl"),
        ("public-domain", "LicenseRef-public-domain"),
        ("Apache-2.0", "Apache-2.0"),
        ("zlib", "Zlib"),
        ("MPL-2.0", "MPL-2.0"),
    ];
    for (deb, spdx) in cases {
        assert_eq!(translate_name(deb).0, spdx, "{deb}");
        assert_eq!(translate_line(deb).unwrap().expression, spdx, "{deb}");
    }
    let (r, known) = translate_name("MIT-like");
    assert!(!known);
    assert_eq!(r, "LicenseRef-MIT-like");
}

#[test]
fn license_line_operators_and_exceptions() {
    let t = |s: &str| comparable_expression(&translate_line(s).unwrap().expression).unwrap();
    let c = |s: &str| comparable_expression(s).unwrap();
    assert_eq!(
        t("Artistic or GPL-1+"),
        c("Artistic-1.0-Perl OR GPL-1.0-or-later")
    );
    assert_eq!(
        t("GPL-3+ and BSD-4-clause-UC"),
        c("GPL-3.0-or-later AND BSD-4-Clause-UC")
    );
    // `and` binds tighter than `or`; a comma closes a group.
    assert_eq!(
        t("MIT or GPL-2+ and ISC"),
        c("MIT OR (GPL-2.0-or-later AND ISC)")
    );
    assert_eq!(
        t("MIT or GPL-2+, and ISC"),
        c("(MIT OR GPL-2.0-or-later) AND ISC")
    );
    assert_eq!(
        t("GPL-3+ with Bison exception"),
        c("GPL-3.0-or-later WITH Bison-exception-2.2")
    );
    assert_eq!(
        t("GPL-3+ with GCC exception"),
        c("GPL-3.0-or-later WITH GCC-exception-3.1")
    );
    assert_eq!(
        t("GPL-2+ with Autoconf exception"),
        c("GPL-2.0-or-later WITH Autoconf-exception-2.0")
    );
    // An exception SPDX 2.3 cannot express becomes one LicenseRef, flagged.
    let x = translate_line("GPL-2+ with OpenSSL exception").unwrap();
    assert!(x.expression.starts_with("LicenseRef-"), "{}", x.expression);
    assert_eq!(x.unknown_names.len(), 1);
    // Exact SPDX ids are accepted case-insensitively; deprecated ones are not produced.
    assert_eq!(t("gpl-2.0+"), c("GPL-2.0-or-later"));
}

const HDR: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n";

fn shipped(paths: &[&str]) -> Shipped {
    Shipped {
        paths: paths.iter().map(|s| s.to_string()).collect(),
        regular: paths.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn dep5_packaging_tests_and_texinfo_stanzas_are_excluded() {
    let text = format!(
        "{HDR}Files: *\nCopyright: x\nLicense: GPL-3+\n\n\
         Files: debian/*\nCopyright: y\nLicense: GPL-2+\n\n\
         Files: tests/foo.c\n tests/bar.c\nCopyright: z\nLicense: Expat\n\n\
         Files: doc/manual.texi\nCopyright: z\nLicense: GFDL-NIV-1.3+\n\n\
         Files: src/pd.c\nCopyright: none\nLicense: public-domain\n\n\
         License: GPL-3+\n This program is free software; under GPL-3.\n .\n License: BSD-4-clause\n"
    );
    let e = evaluate_dep5(
        &text,
        "demo",
        &shipped(&["usr/bin/demo", "usr/share/doc/demo/copyright"]),
    );
    assert_eq!(e.method, DetectionMethod::Dep5);
    let got = comparable_expression(e.expression.as_deref().unwrap()).unwrap();
    assert_eq!(
        got,
        comparable_expression("GPL-3.0-or-later AND LicenseRef-public-domain").unwrap()
    );
    assert_eq!(
        e.notes.iter().filter(|n| n.starts_with("dropped")).count(),
        3,
        "{:?}",
        e.notes
    );
    // The same file with an info manual shipped keeps the GFDL stanza.
    let e = evaluate_dep5(
        &text,
        "demo",
        &shipped(&["usr/bin/demo", "usr/share/info/demo.info.gz"]),
    );
    assert!(
        e.expression
            .unwrap()
            .contains("GFDL-1.3-no-invariants-or-later")
    );
    // A doc-only package keeps only the umbrella stanza.
    let e = evaluate_dep5(&text, "demo", &shipped(&["usr/share/doc/demo/copyright"]));
    assert_eq!(e.expression.as_deref(), Some("GPL-3.0-or-later"));
}

#[test]
fn dep5_prose_lines_are_not_names_and_or_later_text_is_honoured() {
    // License texts mention other licenses; only the first line is a name.
    let text = format!(
        "{HDR}Files: *\nCopyright: x\nLicense: GPL-2\n This program is free software; you can redistribute it under the\n \
         terms of the GNU General Public License, version 2, as published by the FSF.\n .\n \
         See /usr/share/common-licenses/GPL-2 and also mentions GPL-3+ or Expat.\n\n\
         Files: lib/x.c\nCopyright: y\nLicense: GFDL-NIV-1.3\n\n\
         License: GFDL-NIV-1.3\n Permission is granted under the GNU Free Documentation License, Version 1.3 or\n any later version published by the Free Software Foundation.\n"
    );
    let e = evaluate_dep5(&text, "demo", &shipped(&["usr/bin/x"]));
    assert_eq!(
        comparable_expression(e.expression.as_deref().unwrap()).unwrap(),
        comparable_expression("GPL-2.0-only AND GFDL-1.3-no-invariants-or-later").unwrap()
    );
    // A multi-word prose License: line is flagged, not split into names.
    let text =
        format!("{HDR}Files: *\nCopyright: x\nLicense: Permission is hereby granted to use it\n");
    let e = evaluate_dep5(&text, "demo", &shipped(&["usr/bin/x"]));
    assert!(
        e.flags
            .iter()
            .any(|f| matches!(f, ReviewFlag::UnknownLicenseName(_))),
        "{:?}",
        e.flags
    );
}

#[test]
fn prose_grants_are_recognized_without_curated_entry() {
    let e = evaluate_prose(
        "Copyright 2000 Someone\n\nThis program is free software; you can redistribute it and/or modify\n\
         it under the terms of the GNU General Public License as published by\n\
         the Free Software Foundation; either version 2 of the License, or\n(at your option) any later version.\n\n\
         On Debian systems, see /usr/share/common-licenses/GPL-2.\n",
        "someprog",
        "someprog",
        &shipped(&["usr/bin/someprog"]),
    );
    assert_eq!(e.expression.as_deref(), Some("GPL-2.0-or-later"));
    assert_eq!(e.method, DetectionMethod::Text);
    let e = evaluate_prose(
        "Copyright 2000 Someone. All rights reserved.",
        "x",
        "x",
        &shipped(&["usr/bin/x"]),
    );
    assert_eq!(e.expression, None);
    assert!(e.flags.contains(&ReviewFlag::UnknownLicense));
}

#[test]
fn every_fixture_package_gets_a_valid_expression_or_a_flag() {
    let Some(fx) = fixture() else { return };
    let avail = pool(&fx);
    let mut unknown = 0;
    for (name, deb) in &avail {
        let f = license::detect_deb(deb, &avail).unwrap();
        match &f.expression {
            Some(e) => assert_eq!(&license::canonical_expression(e).unwrap(), e, "{name}"),
            None => {
                unknown += 1;
                assert!(f.flags.contains(&ReviewFlag::UnknownLicense), "{name}");
            }
        }
        if !f.dep5 && !matches!(f.method, DetectionMethod::Curated { .. }) {
            assert!(
                !f.flags.is_empty(),
                "{name}: uncurated prose must be flagged"
            );
        }
        println!(
            "{name:28} {:8} {} [{}]",
            f.method.label(),
            f.expression.as_deref().unwrap_or("NOASSERTION"),
            f.flags
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    println!("{unknown} of {} without a license", avail.len());
}
