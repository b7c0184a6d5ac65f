//! Build benchmark: the example images cold (empty store), unchanged (no-op),
//! and after one recipe change, beside the apt way in the same run.
//!
//! `cargo bench --bench build` runs the release `imgforge` binary as a child
//! process on a copy of the examples with the fixture mirror
//! (`../shared/debian` + `../shared/debian-essential`) and prints a Markdown
//! table: wall time and the child's peak RSS for each case (cold: the
//! median of three builds, each with an empty store), then, unless
//! `IMGFORGE_BENCH_APT=0`, the time of `../shared/bench/apt-peer/run.sh`
//! (mmdebstrap + buildah + `apt-get install`, cold) and the ratio.
//! `IMGFORGE_BENCH_JOBS` sets `--jobs` (default: all cores). Says what is
//! missing and exits when a fixture is absent.
//!
//! With a registry (`IMGFORGE_TEST_REGISTRY=HOST:PORT`, plain HTTP on
//! loopback) two more cases: a cold build that also uploads every step
//! (`--cache-to`), and a build with an empty local store that fetches
//! them (`--cache-from`): what a second CI runner pays.

mod common;

use common::{copy_dir, measure};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One flat mirror of the two fixtures (symlinks + concatenated index).
fn examples_mirror(shared: &Path, dir: &Path) -> PathBuf {
    let pool = dir.join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    let mut index = String::new();
    for f in ["debian", "debian-essential"] {
        let src = shared.join(f).canonicalize().unwrap();
        for e in std::fs::read_dir(src.join("pool")).unwrap() {
            let p = e.unwrap().path();
            std::os::unix::fs::symlink(&p, pool.join(p.file_name().unwrap())).unwrap();
        }
        index.push_str(
            std::fs::read_to_string(src.join("Packages"))
                .unwrap()
                .trim_end(),
        );
        index.push_str("\n\n");
    }
    std::fs::write(dir.join("Packages"), index).unwrap();
    dir.to_path_buf()
}

/// Cold builds measured; the median is reported.
const COLD_RUNS: usize = 3;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared");
    for f in ["debian/Packages", "debian-essential/Packages"] {
        if !shared.join(f).is_file() {
            eprintln!(
                "the build benchmark needs {}; not run",
                shared.join(f).display()
            );
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mirror = examples_mirror(&shared, &tmp.path().join("mirror"));
    let tree = tmp.path().join("tree");
    for d in ["recipes", "base"] {
        copy_dir(&root.join(d), &tree.join(d));
    }
    let jobs = std::env::var("IMGFORGE_BENCH_JOBS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string()
    });
    let build_with = |out: &str, cache: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_imgforge"));
        c.current_dir(&tree)
            .args([
                "-q", "build", "recipes", "--no-apt", "--locked", "--jobs", &jobs,
            ])
            .arg("--mirror")
            .arg(&mirror)
            .arg("--cache")
            .arg(tmp.path().join(cache))
            .args(["--out", out])
            .args(extra);
        measure(&mut c)
    };
    let build = |out: &str, cache: &str| build_with(out, cache, &[]);
    // Cold builds vary from run to run (file creation after the previous
    // run's deletions costs more on some file systems): three, each with an
    // empty store, and the median is the figure. The last store is then
    // the warm one.
    let mut colds: Vec<(f64, f64)> = (1..=COLD_RUNS)
        .map(|i| build(&format!("out-cold{i}"), &format!("cache{i}")))
        .collect();
    let warm = format!("cache{COLD_RUNS}");
    let noop = build("out-noop", &warm);
    std::fs::write(tree.join("recipes/extra.txt"), "extra\n").unwrap();
    let p = tree.join("recipes/python.toml");
    let mut r = std::fs::read_to_string(&p).unwrap();
    r.push_str("\n[[files]]\nsrc = \"extra.txt\"\ndest = \"/etc/extra.txt\"\n");
    std::fs::write(&p, r).unwrap();
    let change = build("out-change", &warm);
    let runs: Vec<String> = colds.iter().map(|c| format!("{:.2}", c.0)).collect();
    colds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let cold = colds[COLD_RUNS / 2];
    println!("| case (examples, --jobs {jobs}) | wall (s) | peak RSS (MiB) |");
    println!("|---|---|---|");
    println!(
        "| imgforge cold (empty store; median of {}) | {:.2} | {:.0} |",
        runs.join(", "),
        cold.0,
        cold.1
    );
    println!("| imgforge no-op rebuild | {:.3} | {:.0} |", noop.0, noop.1);
    println!(
        "| imgforge one change (a file added to python) | {:.2} ({:.0}% of cold) | {:.0} |",
        change.0,
        100.0 * change.0 / cold.0,
        change.1
    );
    remote_cases(&build_with, cold.0);
    let peer = shared.join("bench/apt-peer/run.sh");
    if std::env::var("IMGFORGE_BENCH_APT").as_deref() == Ok("0") || !peer.is_file() {
        println!(
            "\n(the apt way not run: IMGFORGE_BENCH_APT=0 or no {})",
            peer.display()
        );
        return;
    }
    let mut c = Command::new("bash");
    c.arg(&peer).env("OUT", tmp.path().join("apt-peer"));
    let apt = measure(&mut c);
    println!(
        "| the apt way, cold (mmdebstrap + buildah) | {:.2} | {:.0} |",
        apt.0, apt.1
    );
    println!(
        "\nimgforge cold is {:.1} times faster than the apt way in this run",
        apt.0 / cold.0
    );
}

/// The remote step cache: a cold build uploading to a fresh repository of
/// the registry, then an empty store fetching from it; printed as rows of
/// the table, or why they were not run.
/// A build into `out` with store `cache` and extra flags: (seconds, peak RSS MiB).
type Build<'a> = dyn Fn(&str, &str, &[&str]) -> (f64, f64) + 'a;

fn remote_cases(build: &Build, cold: f64) {
    let Ok(host) = std::env::var("IMGFORGE_TEST_REGISTRY") else {
        println!(
            "\n(the remote cache cases not run: no IMGFORGE_TEST_REGISTRY=HOST:PORT registry)"
        );
        return;
    };
    // A repository no earlier run used: the upload is a full one.
    let unique = tempfile::Builder::new()
        .prefix("bench-")
        .tempdir()
        .expect("tempdir");
    let name = unique
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase();
    let repo = format!(
        "{host}/imgforge-bench/{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    let up = build("out-upload", "cache-upload", &["--cache-to", &repo]);
    let remote = build("out-remote", "cache-remote", &["--cache-from", &repo]);
    println!(
        "| imgforge cold, uploading every step (--cache-to) | {:.2} ({:.0}% of cold) | {:.0} |",
        up.0,
        100.0 * up.0 / cold,
        up.1
    );
    println!(
        "| imgforge empty store, --cache-from a warmed registry | {:.2} ({:.0}% of cold) | {:.0} |",
        remote.0,
        100.0 * remote.0 / cold,
        remote.1
    );
}
