//! Build benchmark: cold build of the example images from the fixture mirror.
//!
//! `cargo bench --bench build` prints, for `--jobs 1` and all cores: wall
//! time, layer data produced (uncompressed tar bytes) and its rate, and the
//! peak resident memory of the process. Needs `../shared/debian` and runc
//! (for hello's build stage); says so and exits when they are missing.

use imgforge::layer::Compression;
use imgforge::ops::{BuildOptions, CommonOptions, build};
use std::path::PathBuf;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mirror = root.join("../shared/debian");
    if !mirror.join("Packages").is_file() {
        eprintln!(
            "SKIP: the build benchmark needs the package fixture at {}",
            mirror.display()
        );
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let compression = match std::env::var("IMGFORGE_BENCH_COMPRESSION").as_deref() {
        Ok("zstd") => Compression::Zstd(3),
        _ => Compression::Gzip(6),
    };
    println!("| jobs | compression | wall (s) | layer data (MB) | MB/s | peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|");
    for jobs in [1, cores] {
        let tmp = tempfile::tempdir().expect("tempdir");
        // A copy of the recipes so the tree's lock is used but never rewritten.
        let opts = BuildOptions {
            common: CommonOptions {
                recipes: root.join("recipes"),
                base: None,
                mirror: Some(mirror.clone()),
                apt: false,
                cache: Some(tmp.path().join("cache")),
            },
            out: tmp.path().join("out"),
            bundle: None,
            jobs: Some(jobs),
            compression,
            locked: true,
            use_cache: false,
            quiet: true,
            force: false,
            metadata_file: None,
            json: false,
            source_date_epoch: None,
            max_package_entries: imgforge::deb::DEFAULT_MAX_ENTRIES,
            sign_key: None,
        };
        let t = Instant::now();
        let s = match build(&opts) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("build failed: {e:#}");
                std::process::exit(1);
            }
        };
        let secs = t.elapsed().as_secs_f64();
        let mb = s.layer_bytes as f64 / 1e6;
        println!(
            "| {jobs} | {compression:?} | {secs:.1} | {mb:.1} | {:.1} | {:.0} |",
            mb / secs,
            peak_rss_mib()
        );
    }
}
