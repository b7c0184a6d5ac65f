//! License detection: score against the fixture answer key, the Debian→SPDX
//! name table, and DEP-5 edge cases on in-memory copyright files.

use crate::common::*;
use imgforge::sbom::license::{
    self, DetectionMethod, ReviewFlag, Shipped, comparable_expression, evaluate_dep5,
    evaluate_prose,
};
use imgforge::sbom::names::{translate_line, translate_name};
use std::collections::{BTreeMap, BTreeSet};
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

needs! { [has_fixture_debian, has_fixture_licenses] "needs ../shared/debian, ../shared/licenses";
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
}

needs! { [has_fixture_debian] "needs ../shared/debian";
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

needs! { [has_fixture_debian_index] "needs ../shared/debian-index";
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

needs! { [has_fixture_debian] "needs ../shared/debian";
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
                assert_ne!(
                    f.confidence,
                    license::Confidence::High,
                    "{name}: prose read by grant sentences is never high confidence"
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
}

// ------------------------------------------------------------------ answer keys

/// One row of an answer key: (package, version, expected, main).
fn key_rows(tsv: &std::path::Path) -> Vec<(String, String, String, String)> {
    std::fs::read_to_string(tsv)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].into(), c[1].into(), c[3].into(), c[4].into())
        })
        .collect()
}

/// Score of one key against the annex of a build.
#[derive(Debug, Default)]
struct Score {
    exact: usize,
    main: usize,
    wrong: usize,
    missing: usize,
    flagged: usize,
    total: usize,
    unflagged_misses: Vec<String>,
    wrong_variants: Vec<String>,
}

fn score_key(name: &str, tsv: &std::path::Path, annex: &serde_json::Value) -> Score {
    let by_pkg: BTreeMap<&str, &serde_json::Value> = annex["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["package"].as_str().unwrap(), p))
        .collect();
    let mut s = Score::default();
    for (pkg, version, expected, main) in key_rows(tsv) {
        let row = by_pkg
            .get(pkg.as_str())
            .unwrap_or_else(|| panic!("{name}: {pkg} not in the image"));
        assert_eq!(row["version"], version.as_str(), "{pkg}: version");
        let got = row["license"].as_str().unwrap();
        let flags: Vec<&str> = row["review_flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        s.total += 1;
        s.flagged += usize::from(!flags.is_empty());
        let verdict = if got == "NOASSERTION" {
            s.missing += 1;
            "MISSING"
        } else if comparable_expression(got).unwrap() == comparable_expression(&expected).unwrap() {
            s.exact += 1;
            "EXACT"
        } else if license::expression_terms(got).contains(&main) {
            s.main += 1;
            "MAIN"
        } else {
            s.wrong += 1;
            "WRONG"
        };
        if verdict != "EXACT" && flags.is_empty() {
            s.unflagged_misses.push(pkg.clone());
        }
        s.wrong_variants
            .extend(wrong_gnu_variants(&pkg, got, &expected));
        println!(
            "{name} {verdict:7} {pkg:26} got={got}\n{:44}exp={expected} [confidence {}; flags: {}]",
            "",
            row["confidence"].as_str().unwrap(),
            flags.join(",")
        );
    }
    println!(
        "{name}: exact {}/{} · main {} · wrong {} · missing {} · flagged {}",
        s.exact, s.total, s.main, s.wrong, s.missing, s.flagged
    );
    s
}

/// `-only` where `-or-later` is expected and the reverse.
fn wrong_gnu_variants(pkg: &str, got: &str, expected: &str) -> Vec<String> {
    let exp_terms = license::expression_terms(expected);
    let mut out = Vec::new();
    for t in license::expression_terms(got) {
        let Some((base, var)) = gnu_variant(&t) else {
            continue;
        };
        for e in &exp_terms {
            if let Some((eb, ev)) = gnu_variant(e) {
                if eb == base && ev != var && !exp_terms.contains(&t) {
                    out.push(format!("{pkg}: got {t}, expected {e}"));
                }
            }
        }
    }
    out
}

/// One mirror made of both frozen pools (the dev pool's README says how).
fn combined_mirror(fx: &std::path::Path, dev_pool: &std::path::Path, dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("pool")).unwrap();
    let mut index = Vec::new();
    for src in [fx, dev_pool] {
        for e in std::fs::read_dir(src.join("pool")).unwrap() {
            let p = e.unwrap().path();
            let to = dir.join("pool").join(p.file_name().unwrap());
            if !to.exists() {
                std::os::unix::fs::symlink(&p, &to).unwrap();
            }
        }
        index.extend(std::fs::read(src.join("Packages")).unwrap());
        if !index.ends_with(b"\n\n") {
            index.push(b'\n');
        }
    }
    std::fs::write(dir.join("Packages"), index).unwrap();
}

/// The image of both keys' packages, built once per test process.
struct KeyBuild {
    _tmp: tempfile::TempDir,
    legal: PathBuf,
    fixture_key: PathBuf,
    dev_key: PathBuf,
}

fn key_build() -> Option<&'static KeyBuild> {
    static BUILD: std::sync::OnceLock<Option<KeyBuild>> = std::sync::OnceLock::new();
    BUILD
        .get_or_init(|| {
            let fx = examples_mirror()?;
            let fixture_key = license_answers()?;
            let (dev_key, dev_pool) = dev_license_fixture()?;
            let tmp = copy_examples();
            let dir = tmp.path();
            // No configure toolset here (its packages are not in this
            // mirror): the license build does not need configuration.
            let base = dir.join("base/base.toml");
            let base_text = std::fs::read_to_string(&base).unwrap();
            let cut = base_text.find("[configure.toolset]").unwrap_or(base_text.len());
            std::fs::write(&base, &base_text[..cut]).unwrap();
            combined_mirror(&fx, &dev_pool, &dir.join("mirror"));
            for f in std::fs::read_dir(dir.join("recipes")).unwrap() {
                let p = f.unwrap().path();
                if p.extension().is_some_and(|e| e == "toml" || e == "lock") {
                    std::fs::remove_file(p).unwrap();
                }
            }
            let mut recipe = String::from(
                "# Every package of both license answer keys.\n[image]\nname = \"license-keys\"\ntag = \"1\"\n\n[packages]\n",
            );
            let mut seen = BTreeSet::new();
            for key in [&fixture_key, &dev_key] {
                for (pkg, ver, _, _) in key_rows(key) {
                    if seen.insert(pkg.clone()) {
                        recipe.push_str(&format!("\"{pkg}\" = \"{ver}\"\n"));
                    }
                }
            }
            std::fs::write(dir.join("recipes/license-keys.toml"), recipe).unwrap();
            let o = run(imgforge()
                .current_dir(dir)
                .args(["build", "recipes", "--no-apt", "--mirror", "mirror"])
                .args(["--out", "out", "--bundle", "out.tar", "--cache", "cache"]));
            assert!(o.status.success(), "{}", text(&o));
            Some(KeyBuild {
                legal: dir.join("out/legal"),
                _tmp: tmp,
                fixture_key,
                dev_key,
            })
        })
        .as_ref()
}

fn annex(b: &KeyBuild) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(b.legal.join("license-keys.licenses.json")).unwrap())
        .unwrap()
}

needs! { [has_fixture_debian, has_fixture_debian_licenses, has_fixture_licenses]
    "needs ../shared/debian, ../shared/debian-licenses, ../shared/licenses";
    fn license_keys_score_on_a_built_image() {
        let Some(b) = key_build() else { return };
        let a = annex(b);
        let fx = score_key("fixture", &b.fixture_key, &a);
        let dev = score_key("dev", &b.dev_key, &a);
        let flagged = fx.flagged + dev.flagged;
        let total = fx.total + dev.total;
        println!(
            "both keys: flagged {flagged}/{total} ({:.0}%)",
            100.0 * flagged as f64 / total as f64
        );
        assert_eq!((fx.exact, fx.total), (19, 19), "fixture key");
        assert!(
            dev.exact >= 27 && dev.total == 30,
            "dev key {}/{}",
            dev.exact,
            dev.total
        );
        let wrong: Vec<&String> = fx
            .wrong_variants
            .iter()
            .chain(&dev.wrong_variants)
            .collect();
        assert!(wrong.is_empty(), "wrong -only/-or-later: {wrong:?}");
        let unflagged: Vec<&String> = fx
            .unflagged_misses
            .iter()
            .chain(&dev.unflagged_misses)
            .collect();
        assert!(
            unflagged.is_empty(),
            "answers off the key without a flag: {unflagged:?}"
        );
        assert!(flagged * 5 <= total, "{flagged}/{total} flagged (over 20%)");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_licenses, has_fixture_licenses]
    "needs ../shared/debian, ../shared/debian-licenses, ../shared/licenses";
    fn no_curated_entry_names_a_dev_key_source() {
        let Some(b) = key_build() else { return };
        let a = annex(b);
        for (pkg, ..) in key_rows(&b.dev_key) {
            let row = a["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["package"] == pkg.as_str())
                .unwrap();
            let source = row["source"].as_str().unwrap();
            assert!(
                imgforge::sbom::curated::for_source(source).is_none(),
                "curated entry for dev-key source {source} ({pkg})"
            );
            assert_ne!(row["method"], "curated", "{pkg}");
        }
    }
}

needs! { [has_fixture_debian, has_fixture_debian_licenses, has_fixture_licenses]
    "needs ../shared/debian, ../shared/debian-licenses, ../shared/licenses";
    fn legal_reports_carry_evidence_and_the_flag_legend() {
        let Some(b) = key_build() else { return };
        let a = annex(b);
        // Every row has a confidence and, when evaluated, per-stanza evidence
        // with a reason for each kept or dropped stanza.
        for p in a["packages"].as_array().unwrap() {
            assert!(
                ["high", "medium", "low"].contains(&p["confidence"].as_str().unwrap()),
                "{p}"
            );
            for st in p["stanzas"].as_array().unwrap() {
                assert!(!st["reason"].as_str().unwrap().is_empty(), "{st}");
            }
        }
        let lz4 = a["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["package"] == "liblz4-1")
            .unwrap();
        let dropped: Vec<&str> = lz4["stanzas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kept"] == false)
            .map(|s| s["reason"].as_str().unwrap())
            .collect();
        assert!(
            dropped.iter().any(|r| r.contains("ships no programs")),
            "{dropped:?}"
        );
        let md = std::fs::read_to_string(b.legal.join("license-keys.md")).unwrap();
        let csv = std::fs::read_to_string(b.legal.join("license-keys.csv")).unwrap();
        let html = std::fs::read_to_string(b.legal.join("license-keys.html")).unwrap();
        for (f, _) in ReviewFlag::LEGEND {
            assert!(md.contains(f) && html.contains(f), "legend lacks {f}");
        }
        assert!(md.contains("DROPPED Files: programs/"), "markdown evidence");
        assert!(csv.lines().next().unwrap().ends_with(",evidence"));
        // Self-contained: no external script, style sheet, image or font.
        for needle in [" src=", "<link", "@import", "url("] {
            assert!(
                !html.contains(needle),
                "HTML report loads a resource: {needle}"
            );
        }
        assert!(html.contains("href=\"attribution/libzstd1/copyright\""));
        assert!(b.legal.join("attribution/libzstd1/copyright").is_file());
    }
}

needs! { [has_chromium, has_fixture_debian, has_fixture_debian_licenses, has_fixture_licenses]
    "needs `chromium` on PATH, ../shared/debian, ../shared/debian-licenses, ../shared/licenses";
    fn html_report_renders_in_headless_chromium() {
        let Some(b) = key_build() else { return };
        if !require_tool("chromium") {
            return;
        }
        let page = b.legal.join("license-keys.html");
        let url = format!("file://{}", page.display());
        let shot = std::env::temp_dir().join(format!(
            "imgforge-license-report-{}.png",
            std::process::id()
        ));
        let chromium = |extra: &[&str]| {
            run(std::process::Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                ])
                .args(["--window-size=1600,1200", "--virtual-time-budget=3000"])
                .args(extra)
                .arg(&url))
        };
        // The script ran: the "shown" counter is filled in the rendered DOM.
        let o = chromium(&["--dump-dom"]);
        let dom = String::from_utf8_lossy(&o.stdout).to_string();
        let rows = annex(b)["packages"].as_array().unwrap().len();
        assert!(
            dom.contains(&format!("<span id=\"shown\">{rows}</span>")),
            "script did not run: {}",
            text(&o)
        );
        let o = chromium(&[&format!("--screenshot={}", shot.display())]);
        let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {}", text(&o)));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{} bytes",
            png.len()
        );
        println!("screenshot of the HTML report: {}", shot.display());
    }
}

// ------------------------------------------------------- the own labelled set

/// The columns of one `eval/licenses` TSV file, header dropped.
fn eval_rows(file: &str) -> Vec<Vec<String>> {
    let p = root().join("eval").join("licenses").join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

/// The committed labelled set is whole and consistent: 100 packages, both
/// labellings and the settled key name the same packages and versions,
/// every expression is valid SPDX with its main license among its terms,
/// rows the labellers agreed on are kept as they were, the others say how
/// they were settled, and the agreement the README states is the one the
/// files give.
#[test]
fn own_label_set_is_complete_and_settled() {
    let packages = eval_rows("packages.tsv");
    assert_eq!(packages.len(), 100);
    let sources: BTreeSet<&str> = packages.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(sources.len(), 100, "one binary package per source");
    let [a, b, settled] = ["labels-a.tsv", "labels-b.tsv", "labels.tsv"].map(eval_rows);
    let mut agree = 0;
    let mut main_agree = 0;
    for (i, p) in packages.iter().enumerate() {
        for key in [&a, &b, &settled] {
            assert_eq!((&key[i][0], &key[i][1]), (&p[0], &p[1]), "row {i}");
            assert_eq!(key[i].len(), 6, "{}: six columns", p[0]);
            let expr = comparable_expression(&key[i][3])
                .unwrap_or_else(|e| panic!("{}: {}: {e}", p[0], key[i][3]));
            assert!(
                license::expression_terms(&expr).contains(&key[i][4]),
                "{}: main license {} not in {expr}",
                p[0],
                key[i][4]
            );
        }
        let same = comparable_expression(&a[i][3]) == comparable_expression(&b[i][3]);
        agree += usize::from(same);
        main_agree += usize::from(a[i][4] == b[i][4]);
        if same {
            assert_eq!(
                comparable_expression(&settled[i][3]),
                comparable_expression(&a[i][3]),
                "{}: the labellers agreed",
                p[0]
            );
        } else {
            assert!(settled[i][5].contains("SETTLED"), "{}: how settled?", p[0]);
        }
    }
    let readme = std::fs::read_to_string(root().join("eval/licenses/README.md")).unwrap();
    assert!(
        readme.contains(&format!("expression agreement: {agree}/100")),
        "README states another expression agreement than {agree}/100"
    );
    assert!(
        readme.contains(&format!("main_license agreement: {main_agree}/100")),
        "README states another main_license agreement than {main_agree}/100"
    );
}

/// A short grant notice in a prose file ("licenses this work to You under
/// the Apache License, Version 2.0") is a grant, though it is not a whole
/// license text.
#[test]
fn prose_grant_notices_are_read() {
    let e = evaluate_prose(
        "Copyright:\n\nLicensed to the Foundation under one or more contributor\n\
         license agreements. The Foundation licenses this work to You under the Apache License,\n\
         Version 2.0 (the \"License\"); you may not use this work except in compliance\n\
         with the License.\n",
        "libdemo1",
        "demo",
        &shipped(&["usr/lib/x86_64-linux-gnu/libdemo.so.1"]),
    );
    assert_eq!(e.expression.as_deref(), Some("Apache-2.0"));
}

/// In a library-only package, a stanza for one subdirectory of the
/// library's sources does not make the umbrella stanza "the other parts":
/// the umbrella still covers the rest of the library.
#[test]
fn umbrella_stays_when_only_a_library_subdirectory_is_named() {
    let text = format!(
        "{HDR}Files: *\nCopyright: x\nLicense: ISC\n\n\
         Files: src/libdemo/hash/blake2b.*\nCopyright: y\nLicense: CC0\n\n\
         License: ISC\n Permission to use, copy, modify, and/or distribute this software for any\n \
         purpose with or without fee is hereby granted.\n"
    );
    let e = evaluate_dep5(
        &text,
        "demo",
        &shipped(&["usr/lib/x86_64-linux-gnu/libdemo.so.23"]),
    );
    let got = comparable_expression(e.expression.as_deref().unwrap()).unwrap();
    assert_eq!(got, comparable_expression("ISC AND CC0-1.0").unwrap());
}
