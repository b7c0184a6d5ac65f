//! The real-world sets of `../shared/real-world/` (postgres, redis, apache,
//! a Flask app, Java, node, nginx, git, curl + jq, php-fpm): each pinned to
//! the archive's current versions with `imgforge update` (the host's apt
//! configuration, as the quick start), built as one recipes tree on the
//! example base the way the docs recommend for server images
//! (`essential = true`), loaded into docker, and checked with the set's
//! smoke check (`smoke.sh`: no network, a static busybox at `/bb`); then
//! each image is compared with real dpkg's install of the same packages at
//! the same versions (mmdebstrap from a repository of the vendored
//! packages), as the examples' parity test does.

use crate::common::{imgforge, require_tool, root, run, text};
use crate::configure::Exception;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One set of `sets.tsv`: its name and packages.
struct Set {
    name: String,
    packages: Vec<String>,
}

fn sets(dir: &Path) -> Vec<Set> {
    std::fs::read_to_string(dir.join("sets.tsv"))
        .expect("sets.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Set {
                name: cols[0].to_string(),
                packages: cols[1].split_whitespace().map(str::to_string).collect(),
            }
        })
        .collect()
}

/// Docker image name of a set (prefixed: the test's images never meet a
/// user's).
fn image_name(set: &str) -> String {
    format!("imgforge-real-world/{set}")
}

/// A recipe pinning every package to "0", for `update` to move to the
/// archive's current version.
fn recipe(set: &Set) -> String {
    let mut r = format!(
        "[image]\nname = \"{}\"\ntag = \"test\"\nessential = true\n\n[packages]\n",
        image_name(&set.name)
    );
    for p in &set.packages {
        r.push_str(&format!("\"{p}\" = \"0\"\n"));
    }
    r
}

fn docker(args: &[&str]) -> std::process::Output {
    run(Command::new("docker").args(args))
}

/// The ten sets' tree under `dir/tree`, pinned to the archive's current
/// versions (`dir/seed` holds the unpinned copy).
fn pinned_tree(dir: &Path, all: &[Set], cache: &Path) -> PathBuf {
    let seed = dir.join("seed");
    crate::common::copy_dir(&root().join("base"), &seed.join("base"));
    let base = seed.join("base/base.toml");
    let base_text = std::fs::read_to_string(&base).unwrap();
    assert!(base_text.contains("\nname = \"base\"\n"), "{base_text}");
    let base_text = base_text.replace(
        "\nname = \"base\"\n",
        &format!("\nname = \"{}\"\n", image_name("base")),
    );
    std::fs::write(&base, base_text).unwrap();
    std::fs::create_dir_all(seed.join("recipes")).unwrap();
    for s in all {
        std::fs::write(seed.join(format!("recipes/{}.toml", s.name)), recipe(s)).unwrap();
    }
    let tree = dir.join("tree");
    let o = run(imgforge()
        .current_dir(&seed)
        .args(["-q", "update", "recipes", "--into"])
        .arg(&tree)
        .arg("--cache")
        .arg(cache));
    assert!(o.status.success(), "update:\n{}", text(&o));
    tree
}

needs! { [has_fixture_real_world, has_archive, has_docker, has_busybox, has_runc, has_mmdebstrap, has_tar, has_root]
    "needs ../shared/real-world, the archive of the host's apt configuration, docker, busybox, `runc` on PATH, mmdebstrap, tar, root";
    fn real_world_sets_build_and_pass_their_smoke_checks() {
        let shared = root().join("../shared/real-world");
        assert!(shared.join("sets.tsv").is_file(), "needs ../shared/real-world/sets.tsv");
        for t in ["docker", "busybox", "runc"] {
            if !require_tool(t) {
                return;
            }
        }
        let all = sets(&shared);
        assert!(all.len() >= 10, "{} sets", all.len());
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let tree = pinned_tree(tmp.path(), &all, &cache);
        let o = run(imgforge()
            .current_dir(&tree)
            .args(["build", "recipes", "--out", "out", "--bundle", "images.tar", "--cache"])
            .arg(&cache));
        let t = text(&o);
        assert!(o.status.success(), "build:\n{t}");
        for s in &all {
            assert!(t.contains(&format!("Image {}:test", image_name(&s.name))), "{}: {t}", s.name);
        }
        let o = docker(&["load", "-i", tree.join("images.tar").to_str().unwrap()]);
        assert!(o.status.success(), "docker load:\n{}", text(&o));
        let mut failed = Vec::new();
        for s in &all {
            let r = format!("{}:test", image_name(&s.name));
            let o = run(Command::new("bash")
                .arg(shared.join("smoke.sh"))
                .arg(&r)
                .arg(&s.name)
                .env("TMPDIR", tmp.path()));
            let out = text(&o);
            eprintln!("{}: {}", s.name, out.trim());
            if !o.status.success() {
                failed.push(format!("{}: {}", s.name, out.trim()));
            }
            docker(&["rmi", "-f", &r]);
        }
        let base = tree.join("base/base.toml");
        let tag = std::fs::read_to_string(base).unwrap();
        if let Some(t) = tag.lines().find_map(|l| l.strip_prefix("tag = \"")) {
            docker(&["rmi", "-f", &format!("{}:{}", image_name("base"), t.trim_end_matches('"'))]);
        }
        assert!(failed.is_empty(), "smoke checks failed:\n{}", failed.join("\n"));
        parity_with_dpkg(&tree, &cache, &all, tmp.path());
    }
}

/// Each set's image against real dpkg's install of the same packages at
/// the same versions (mmdebstrap from a repository of the vendored
/// packages): every path the packages own or their scripts make.
fn parity_with_dpkg(tree: &Path, cache: &Path, all: &[Set], tmp: &Path) {
    for t in ["mmdebstrap", "apt-ftparchive", "tar"] {
        if !require_tool(t) {
            return;
        }
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "the parity check needs root (mmdebstrap --mode=root)"
    );
    let vendor = tmp.join("vendor");
    let o = run(imgforge()
        .current_dir(tree)
        .args(["-q", "vendor"])
        .arg(&vendor)
        .arg("--cache")
        .arg(cache));
    assert!(o.status.success(), "vendor:\n{}", text(&o));
    let repo = crate::configure::repo_of(tmp, &[&vendor]);
    let ess = tmp.join("essential");
    crate::configure::mmdebstrap(&repo, &[], &ess);
    let ess_paths = crate::configure::walk(&ess);
    let lock = imgforge::resolve::Lock::read(&tree.join("recipes/imgforge.lock")).unwrap();
    let layers = crate::configure::image_layers(&tree.join("out"));
    let base = image_name("base");
    let (mut lines, mut low) = (Vec::new(), Vec::new());
    for s in all {
        let name = image_name(&s.name);
        let ours = tmp.join("roots").join(&s.name);
        std::fs::create_dir_all(&ours).unwrap();
        for l in &layers[&name] {
            let st = Command::new("tar")
                .args(["--same-owner", "-xpf"])
                .arg(l)
                .arg("-C")
                .arg(&ours)
                .status()
                .unwrap();
            assert!(st.success(), "untar {}", l.display());
        }
        let mut pkgs = std::collections::BTreeMap::new();
        for n in [&base, &name] {
            for p in &lock.get(n, "runtime").unwrap().packages {
                pkgs.insert(p.name.clone(), p.version.clone());
            }
        }
        let include: Vec<String> = pkgs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let full = tmp.join(format!("dpkg-{}", s.name));
        crate::configure::mmdebstrap(&repo, &include, &full);
        let names = pkgs.keys().cloned().collect();
        let p =
            crate::configure::parity(&full, &ess, &ess_paths, &ours, &names, &s.name, DOCUMENTED);
        eprintln!("{}", p.line(&s.name));
        for f in p.failures.iter().take(40) {
            eprintln!("    {f}");
        }
        if p.percent() < PARITY {
            low.push(p.line(&s.name));
        }
        lines.push(p.line(&s.name));
        let _ = std::fs::remove_dir_all(&full);
        let _ = std::fs::remove_dir_all(&ours);
    }
    assert!(
        low.is_empty(),
        "below {PARITY}% parity with dpkg:\n{}\nall:\n{}",
        low.join("\n"),
        lines.join("\n")
    );
}

/// The least share of compared paths identical to dpkg's (or a documented
/// difference), per set.
const PARITY: f64 = 99.9;

/// Differences from dpkg's install, documented in docs/configure.md
/// ("Parity with dpkg").
const DOCUMENTED: &[Exception] = &[
    // shadow's backups: left out on purpose.
    ex("etc/passwd-", true),
    ex("etc/group-", true),
    ex("etc/shadow-", true),
    ex("etc/gshadow-", true),
    // "uninitialized", as systemd's first boot expects.
    ex("etc/machine-id", false),
    // Byte-code headers carry the source's normalized mtime.
    ex("*.pyc", false),
    // Java's keystore dated SOURCE_DATE_EPOCH.
    ex("etc/ssl/certs/java/cacerts", false),
    // Made new on every install: ssl-cert's snakeoil key and certificate
    // (its subject names the host, so its hash link is named differently),
    // PostgreSQL's cluster (system identifier, control file, WAL) and the
    // configuration initdb writes from the environment it runs in.
    ex("etc/ssl/private/ssl-cert-snakeoil.key", false),
    ex("etc/ssl/certs/ssl-cert-snakeoil.pem", false),
    ex("->ssl-cert-snakeoil.pem", true),
    ex("var/lib/postgresql/*", false),
    ex("etc/postgresql/15/main/postgresql.conf", false),
    // ucf's registry: the same entries, in the order the packages were
    // configured (imgforge's order is not apt's).
    ex("var/lib/ucf/*", false),
];

const fn ex(pattern: &'static str, absent: bool) -> Exception {
    Exception { pattern, absent }
}
