//! The real-world sets of `../shared/real-world/` (postgres, redis, apache,
//! a Flask app, Java, node, nginx, git, curl + jq, php-fpm): each pinned to
//! the archive's current versions with `imgforge update` (the host's apt
//! configuration, as the quick start), built as one recipes tree on the
//! example base the way the docs recommend for server images
//! (`essential = true`), loaded into docker, and checked with the set's
//! smoke check (`smoke.sh`: no network, a static busybox at `/bb`).

use crate::common::{imgforge, require_tool, root, run, text};
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

needs! { [has_fixture_real_world, has_archive, has_docker, has_busybox, has_runc]
    "needs ../shared/real-world, the archive of the host's apt configuration, docker, busybox, `runc` on PATH";
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
    }
}
