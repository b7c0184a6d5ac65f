//! Resolution benchmark: parse the frozen bookworm indexes
//! (`../shared/debian-index`, ~63,000 stanzas) and lock ~100-package
//! closures from them, printing a table. `cargo bench --bench resolve`.

use imgforge::pkgindex::{self as index, Index, Origin};
use imgforge::resolve::solver::{self, Request};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/debian-index");
    let suites = ["bookworm", "bookworm-updates", "bookworm-security"];
    if !dir.join("bookworm-main-amd64-Packages.xz").is_file() {
        eprintln!("SKIP: needs ../shared/debian-index");
        return;
    }
    let t = Instant::now();
    let mut texts = Vec::new();
    for s in suites {
        let p = dir.join(format!("{s}-main-amd64-Packages.xz"));
        let mut text = String::new();
        liblzma::read::XzDecoder::new(std::fs::File::open(&p).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        texts.push((p, text));
    }
    let unxz = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut idx = Index::new("amd64");
    for (p, text) in &texts {
        index::add_packages_text(&mut idx, text, p, Origin::Url(String::new())).unwrap();
    }
    let parse = t.elapsed().as_secs_f64();
    println!("| step | packages | seconds |\n|---|---|---|");
    println!("| xz decompress (3 indexes) | - | {unxz:.2} |");
    println!(
        "| parse into the index | {} records | {parse:.2} |",
        idx.len()
    );
    for set in [
        &["postgresql-15"][..],
        &["mariadb-server"],
        &["python3-numpy", "python3-scipy"],
        &["bsd-mailx", "postfix-pgsql"],
        &["php-redis"],
    ] {
        let pins: BTreeMap<String, String> = set
            .iter()
            .map(|p| (p.to_string(), idx.by_name[*p][0].version.to_string()))
            .collect();
        let req = Request {
            label: "bench".into(),
            pins: &pins,
            installed: &[],
            prefer: &[],
        };
        let t = Instant::now();
        let n = solver::resolve(&idx, &req).unwrap().len();
        println!(
            "| lock {} | {n} | {:.3} |",
            set.join(" + "),
            t.elapsed().as_secs_f64()
        );
    }
}
