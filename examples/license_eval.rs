//! Scores the license engine on a labelled set of `.deb` files.
//!
//! ```sh
//! eval/licenses/fetch.sh /tmp/eval-pool      # the set's .debs, sha256-checked
//! cargo run --example license_eval -- /tmp/eval-pool [eval/licenses/labels.tsv]
//! cargo run --example license_eval -- /tmp/eval-pool --explain PACKAGE
//! cargo run --example license_eval -- POOL KEY.tsv --list PACKAGES.tsv
//! ```
//!
//! Each package of the key (`package  version  dep5  expected_expression
//! main_license  notes`) is read from `POOL/<file>` as named by
//! `eval/licenses/packages.tsv` and detected as a build of an image holding
//! it would: its siblings (binary packages of the same source in the
//! image) are itself and the packages of its source it depends on directly,
//! read from bookworm's indexes in `../shared/debian-index` when present. The
//! verdicts are those of the answer-key tests: EXACT (same expression up to
//! operand order), MAIN (the main license is among the terms), WRONG,
//! MISSING (NOASSERTION); a miss without a review flag is listed apart.

use imgforge::deb::Limits;
use imgforge::sbom::license::{self, comparable_expression};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let explain = args.iter().position(|a| a == "--explain").map(|i| {
        let pkg = args.get(i + 1).cloned().unwrap_or_default();
        args.drain(i..(i + 2).min(args.len()));
        pkg
    });
    let Some(pool) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: license_eval POOL [KEY.tsv]\nhelp: eval/licenses/fetch.sh POOL downloads the set"
        );
        return ExitCode::from(2);
    };
    let list = args.iter().position(|a| a == "--list").map(|i| {
        let l = PathBuf::from(args.get(i + 1).cloned().unwrap_or_default());
        args.drain(i..(i + 2).min(args.len()));
        l
    });
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/licenses");
    let list = list.unwrap_or_else(|| here.join("packages.tsv"));
    let key = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("labels.tsv"));
    match run(&pool, &list, &key, explain.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `package -> .deb file name` from the set's package list.
fn files(list: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Some((c.first()?.to_string(), c.get(4)?.to_string()))
        })
        .collect())
}

/// `package -> source` from bookworm's indexes beside the repository
/// (`../shared/debian-index/*.xz`); empty when they are absent.
fn sources() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/debian-index");
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "xz"))
    {
        let mut text = String::new();
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        if liblzma::read::XzDecoder::new(file)
            .read_to_string(&mut text)
            .is_err()
        {
            continue;
        }
        for para in text.split("\n\n") {
            let field = |k: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            };
            if let Some(p) = field("Package: ") {
                let src = field("Source: ").unwrap_or_else(|| p.clone());
                out.insert(p, src);
            }
        }
    }
    out
}

/// The package's siblings in an image holding it: itself and the packages
/// of the same source it depends on directly.
fn siblings(
    pkg: &str,
    source: &str,
    control: &imgforge::deb::ControlInfo,
    sources: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::from([pkg.to_string()]);
    for field in ["Pre-Depends", "Depends"] {
        for alt in control.get(field).unwrap_or_default().split([',', '|']) {
            let name = alt.split_whitespace().next().unwrap_or("");
            let name = name.split(':').next().unwrap_or("");
            if sources.get(name).is_some_and(|s| s == source) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    exact: usize,
    main: usize,
    wrong: usize,
    missing: usize,
    flagged: usize,
    total: usize,
    unflagged: Vec<String>,
}

fn run(pool: &Path, list: &Path, key: &Path, explain: Option<&str>) -> Result<(), String> {
    let files = files(list)?;
    let text = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let limits = Limits::default();
    let sources = sources();
    let mut t = Tally::default();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let c: Vec<&str> = line.split('\t').collect();
        let (pkg, expected, main) = (c[0], c[3], c[4]);
        if explain.is_some_and(|e| e != pkg) {
            continue;
        }
        let file = files
            .get(pkg)
            .ok_or_else(|| format!("{pkg}: not in {}", list.display()))?;
        let deb = pool.join(file);
        if !deb.is_file() {
            return Err(format!(
                "{}: missing\nhelp: eval/licenses/fetch.sh {} downloads the set",
                deb.display(),
                pool.display()
            ));
        }
        let control =
            imgforge::deb::read_control(&deb, &limits).map_err(|e| format!("{pkg}: {e}"))?;
        let source = control
            .get("Source")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or(pkg)
            .to_string();
        let siblings = siblings(pkg, &source, &control, &sources);
        let f = license::detect_with(
            pkg,
            &source,
            control.get("Section"),
            &deb,
            &BTreeMap::new(),
            &limits,
            &siblings,
        )
        .map_err(|e| format!("{pkg}: {e}"))?;
        if explain.is_some() {
            for st in &f.stanzas {
                println!(
                    "{} {} [{}] -> {:?}: {} | {}",
                    if st.kept { "KEPT" } else { "drop" },
                    st.scope,
                    st.label,
                    st.expression,
                    st.reason,
                    st.how.join("; ")
                );
            }
            println!("notes: {}\nflags: {:?}", f.notes.join(" | "), f.flags);
        }
        let got = f.expression.clone().unwrap_or_else(|| "NOASSERTION".into());
        t.total += 1;
        t.flagged += usize::from(!f.flags.is_empty());
        let verdict = if got == "NOASSERTION" {
            t.missing += 1;
            "MISSING"
        } else if comparable_expression(&got).ok() == comparable_expression(expected).ok() {
            t.exact += 1;
            "EXACT"
        } else if license::expression_terms(&got).iter().any(|x| x == main) {
            t.main += 1;
            "MAIN"
        } else {
            t.wrong += 1;
            "WRONG"
        };
        if verdict != "EXACT" && f.flags.is_empty() {
            t.unflagged.push(format!("{pkg} ({verdict})"));
        }
        println!(
            "{verdict:7} {pkg:30} got={got}\n{:38}exp={expected} [{:?}; flags: {}]",
            "",
            f.confidence,
            f.flags.len()
        );
    }
    println!(
        "exact {}/{} · main {} · wrong {} · missing {} · flagged {} · misses without a flag {}: {}",
        t.exact,
        t.total,
        t.main,
        t.wrong,
        t.missing,
        t.flagged,
        t.unflagged.len(),
        t.unflagged.join(", ")
    );
    Ok(())
}
