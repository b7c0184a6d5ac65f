//! `--executor buildkit`: the examples' hello build stage run on Docker's
//! BuildKit gives the bytes of the local runc sandbox; a failing step shows
//! its log; a step sees no network.
//!
//! Each test builds a copy of the examples without nginx and python (hello
//! and the base only), with its own caches, so nothing is shared with
//! another build.

use crate::common::{copy_examples, examples_mirror, imgforge, run, text};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// The docker engine answers, or the test is reported as missing it.
fn docker_ready() -> bool {
    match Command::new("docker").arg("info").output() {
        Ok(o) if o.status.success() => true,
        other => crate::common::missing(&format!(
            "this test needs a reachable docker daemon (`docker info` failed: {})",
            other.map(|o| text(&o)).unwrap_or_else(|e| e.to_string())
        )),
    }
}

/// The examples with hello as the only image.
fn hello_tree() -> tempfile::TempDir {
    let tmp = copy_examples();
    for r in ["nginx.toml", "python.toml"] {
        std::fs::remove_file(tmp.path().join("recipes").join(r)).unwrap();
    }
    tmp
}

fn build(dir: &Path, mirror: &Path, out: &str, cache: &str, extra: &[&str]) -> Output {
    run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "recipes", "--no-apt", "--jobs", "1"])
        .args(["--cache", cache, "--out", out, "--mirror"])
        .arg(mirror)
        .args(extra))
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            out.insert(rel, std::fs::read(e.path()).unwrap());
        }
    }
    out
}

/// The "Built hello build stage in N s" figure of a build's output.
fn stage_seconds(t: &str) -> f64 {
    let line = t
        .lines()
        .find(|l| l.contains("hello build stage in "))
        .unwrap_or_else(|| panic!("the build stage did not run:\n{t}"));
    let s = line.rsplit("stage in ").next().unwrap();
    s.trim().trim_end_matches('s').parse().unwrap()
}

/// The stage images imgforge loaded into docker and has not removed.
fn stage_images() -> String {
    let o = run(Command::new("docker").args([
        "images",
        "--filter",
        "reference=imgforge-stage",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

needs! { [has_docker, has_runc, has_fixture_debian, has_fixture_debian_essential]
    "needs `docker` on PATH (a CLI that builds with BuildKit, and its engine), `runc` on PATH, ../shared/debian, ../shared/debian-essential";
    /// hello's C build stage run by BuildKit gives the same artifact, and
    /// so the same image digest and every output byte, as the local runc
    /// sandbox; each build has its own empty cache, and the stage image
    /// loaded into docker is gone afterwards.
    fn buildkit_stage_gives_the_bytes_of_runc() {
        let Some(mirror) = examples_mirror() else { return };
        if !docker_ready() {
            return;
        }
        let tmp = hello_tree();
        let dir = tmp.path();
        let before = stage_images();
        let a = build(dir, &mirror, "out-runc", "cache-runc", &[]);
        let ta = text(&a);
        assert!(a.status.success(), "runc build: {ta}");
        let b = build(dir, &mirror, "out-buildkit", "cache-buildkit", &["--executor", "buildkit"]);
        let tb = text(&b);
        assert!(b.status.success(), "buildkit build: {tb}");
        eprintln!(
            "hello build stage: runc {:.1}s, buildkit {:.1}s",
            stage_seconds(&ta),
            stage_seconds(&tb)
        );
        let (ra, rb) = (files(&dir.join("out-runc")), files(&dir.join("out-buildkit")));
        assert!(ra.contains_key("index.json") && ra.len() > 10, "{:?}", ra.keys());
        assert_eq!(
            ra.keys().collect::<Vec<_>>(),
            rb.keys().collect::<Vec<_>>(),
            "the two outputs hold other files"
        );
        for (path, bytes) in &ra {
            assert!(&rb[path] == bytes, "{path} differs between runc and buildkit");
        }
        assert_eq!(stage_images(), before, "a stage image was left in docker");
    }
}

/// A probe compiled and run in hello's build stage: the network interfaces
/// it sees and what a connection to the test's listener gives; then it
/// fails on purpose, so the error must show that output.
const PROBE: &str = r#"#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    DIR *d = opendir("/sys/class/net");
    struct dirent *e;
    printf("interfaces:");
    if (d) {
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') printf(" %s", e->d_name);
        closedir(d);
    } else {
        printf(" (unreadable: %s)", strerror(errno));
    }
    printf("\n");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argc > 1 ? argv[1] : "0"));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
        printf("connect 127.0.0.1:%s: connected\n", argv[1]);
    else
        printf("connect 127.0.0.1:%s: %s\n", argv[1], strerror(errno));
    fflush(stdout);
    fprintf(stderr, "probe done, failing on purpose\n");
    return 7;
}
"#;

needs! { [has_docker, has_runc, has_fixture_debian, has_fixture_debian_essential]
    "needs `docker` on PATH (a CLI that builds with BuildKit, and its engine), `runc` on PATH, ../shared/debian, ../shared/debian-essential";
    /// A step on BuildKit sees only `lo` and cannot reach a port the test
    /// listens on at the host's 127.0.0.1; its failure names the stage and
    /// the step, shows its output (stdout and stderr) and keeps its log;
    /// the build exits non-zero and writes no output.
    fn buildkit_step_sees_no_network_and_its_failure_shows_its_log() {
        let Some(mirror) = examples_mirror() else { return };
        if !docker_ready() {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tmp = hello_tree();
        let dir = tmp.path();
        std::fs::write(dir.join("recipes/hello/probe.c"), PROBE).unwrap();
        let recipe = dir.join("recipes/hello.toml");
        let toml = std::fs::read_to_string(&recipe).unwrap();
        let start = toml.find("steps = [").unwrap();
        let end = start + toml[start..].find("\n]\n").unwrap() + 3;
        let steps = format!(
            "steps = [\n  \"gcc-12 -O2 -o /out/probe probe.c\",\n  [\"/out/probe\", \"{port}\"],\n]\n"
        );
        std::fs::write(&recipe, format!("{}{steps}{}", &toml[..start], &toml[end..])).unwrap();

        let o = build(dir, &mirror, "out", "cache", &["--executor", "buildkit"]);
        let t = text(&o);
        assert!(!o.status.success(), "the probe fails on purpose: {t}");
        assert_eq!(o.status.code(), Some(1), "{t}");
        let head = format!("hello: build step 2 failed with exit code 7: /out/probe {port}");
        assert!(t.contains(&head), "{t}");
        assert!(t.contains("\ninterfaces: lo\n"), "a network besides lo: {t}");
        assert!(
            t.contains(&format!("connect 127.0.0.1:{port}: Connection refused")),
            "{t}"
        );
        assert!(t.contains("probe done, failing on purpose"), "stderr missing: {t}");
        let log = t
            .split("full log: ")
            .nth(1)
            .and_then(|s| s.split(" ---").next())
            .map(|s| s.trim_end_matches(')'))
            .unwrap_or_else(|| panic!("no log named: {t}"));
        let kept = std::fs::read_to_string(dir.join(log)).unwrap();
        assert!(kept.contains("interfaces: lo"), "{kept}");
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the step reached the host's loopback"
        );
        assert!(!dir.join("out").exists(), "a failed build wrote out/");
    }
}
