//! The remote step cache (`--cache-from`, `--cache-to`) against a loopback
//! Distribution registry: a runner with an empty store fetches what another
//! uploaded and runs no layer, configure or build-stage step; a corrupted
//! blob, a manifest of another step under a key's tag, a registry that dies
//! mid-build and no registry at all each end in a local build with a
//! warning, and the output is the same bytes every time.

use crate::common::{copy_examples, imgforge, run, text};
use crate::plan::{files, pkg, steps_line, synthetic_tree};
use crate::push::{Registry, registry};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What a proxy does with one exchange.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Pass,
    /// Close the connection without an answer.
    Drop,
    /// Flip the answer's last byte (a blob body, its length kept).
    Corrupt,
}

/// A proxy to `upstream` on 127.0.0.1 that asks `plan` (the exchange's
/// number, the request's head, the answer's length) what to do. Requests
/// are read without bodies: the cache reader sends none.
fn proxy(upstream: String, plan: fn(usize, &str, usize) -> Fault) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut r = BufReader::new(client.try_clone()?);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line.to_ascii_lowercase().starts_with("connection:") {
                        continue;
                    }
                    if line == "\r\n" {
                        head.push_str("Connection: close\r\n\r\n");
                        break;
                    }
                    head.push_str(&line);
                }
                let mut up = std::net::TcpStream::connect(&upstream)?;
                up.write_all(head.as_bytes())?;
                let mut answer = Vec::new();
                up.read_to_end(&mut answer)?;
                match plan(n, &head, answer.len()) {
                    Fault::Drop => client.shutdown(std::net::Shutdown::Both),
                    Fault::Corrupt => {
                        if let Some(b) = answer.last_mut() {
                            *b ^= 0x20;
                        }
                        client.write_all(&answer)
                    }
                    Fault::Pass => client.write_all(&answer),
                }
            });
        }
    });
    addr
}

/// Build the examples copied to `dir` with a cache `cache` (under `dir`)
/// into `out`, with `extra` flags; the output text (the build must succeed).
fn build(dir: &Path, mirror: &Path, cache: &str, out: &str, extra: &[&str]) -> String {
    let o = run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "recipes", "--no-apt", "--locked", "--cache", cache])
        .args(["--out", out, "--mirror"])
        .arg(mirror)
        .args(extra));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

/// `(reused, total)` of step `kind` in a build's Steps line.
fn kind_counts(t: &str, kind: &str) -> Option<(usize, usize)> {
    let line = steps_line(t);
    let after_ran = line.split_once(", ran ").map(|x| x.1)?;
    let inner = after_ran.split_once('(').map(|x| x.1)?;
    let inner = inner.split_once(')').map(|x| x.0)?;
    inner.split(", ").find_map(|part| {
        let (k, n) = part.rsplit_once(' ')?;
        let (r, all) = n.split_once('/')?;
        (k == kind).then(|| (r.parse().unwrap(), all.parse().unwrap()))
    })
}

/// Print what a runner's build said about steps and the cache (seen with
/// `--nocapture`).
fn show(runner: &str, t: &str) {
    let lines: Vec<&str> = t
        .lines()
        .filter(|l| l.contains("Steps") || l.contains("Cache") || l.contains("Warning"))
        .collect();
    eprintln!("runner {runner}:\n{}", lines.join("\n"));
}

/// The warnings of a build about a remote cache.
fn cache_warnings(t: &str) -> Vec<&str> {
    t.lines()
        .filter(|l| l.contains("Warning") && l.contains("remote cache"))
        .collect()
}

/// Runner A: the examples built from an empty store with `--cache-to`,
/// once for every test of this module.
struct Warm {
    reg: Registry,
    /// `host/repository` A uploaded to.
    cache: String,
    tmp: tempfile::TempDir,
    mirror: PathBuf,
}

impl Warm {
    fn dir(&self) -> &Path {
        self.tmp.path()
    }
    fn out(&self) -> PathBuf {
        self.dir().join("out-a")
    }
    fn repo(&self) -> &str {
        self.cache.split_once('/').unwrap().1
    }
}

fn warm() -> &'static Warm {
    static WARM: OnceLock<Warm> = OnceLock::new();
    WARM.get_or_init(|| {
        let reg = registry().expect("a registry");
        let mirror = crate::common::examples_mirror().expect("examples mirror");
        let tmp = copy_examples();
        let cache = reg.destination("cache");
        let t = build(
            tmp.path(),
            &mirror,
            "cache-a",
            "out-a",
            &["--cache-to", &cache],
        );
        show("a", &t);
        assert!(cache_warnings(&t).is_empty(), "{t}");
        let cache_line = t
            .lines()
            .find(|l| l.trim_start().starts_with("Cache"))
            .expect("a Cache line");
        assert!(
            cache_line.contains(" uploaded") && !cache_line.contains(" 0 uploaded"),
            "{t}"
        );
        Warm {
            reg,
            cache,
            tmp,
            mirror,
        }
    })
}

/// A fresh directory beside A's for another runner.
fn runner(w: &Warm, name: &str) -> PathBuf {
    let d = w.dir().join(name);
    std::fs::create_dir_all(&d).unwrap();
    for sub in ["recipes", "base"] {
        crate::common::copy_dir(&w.dir().join(sub), &d.join(sub));
    }
    d
}

needs! { [has_docker_registry, has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs `docker-registry` on PATH, ../shared/debian, ../shared/debian-essential, runc";
    /// Runner B (another empty store, another path) fetches every layer,
    /// configuration and build stage A uploaded, runs none, and writes the
    /// same bytes.
    fn remote_cache_a_second_runner_runs_no_layer_configure_or_stage() {
        let w = warm();
        let b = runner(w, "b");
        let t = build(&b, &w.mirror, "cache-b", "out-b", &["--cache-from", &w.cache]);
        show("b", &t);
        assert!(cache_warnings(&t).is_empty(), "{t}");
        for kind in ["layer", "configure", "build stage"] {
            let (reused, all) = kind_counts(&t, kind).unwrap_or_else(|| panic!("no {kind}: {t}"));
            assert_eq!(reused, all, "{kind} ran on runner B: {}", steps_line(&t));
        }
        assert!(steps_line(&t).contains("(remote "), "{t}");
        assert!(steps_line(&t).contains(" 0 package(s) read"), "{t}");
        assert_eq!(files(&w.out()), files(&b.join("out-b")));
    }
}

needs! { [has_docker_registry, has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs `docker-registry` on PATH, ../shared/debian, ../shared/debian-essential, runc";
    /// A registry whose first large blob arrives with a flipped byte: that
    /// step is refused with a warning naming the blob and runs locally.
    fn remote_cache_a_corrupted_blob_is_refused_and_built_locally() {
        static DONE: AtomicBool = AtomicBool::new(false);
        let w = warm();
        let via = proxy(w.reg.host.clone(), |_, head, len| {
            // A step's file (not its record), asked for by its media type.
            let blob = head.starts_with("GET ") && head.contains("imgforge.step.file");
            match blob && len > 4096 && !DONE.swap(true, Ordering::SeqCst) {
                true => Fault::Corrupt,
                false => Fault::Pass,
            }
        });
        let from = format!("{via}/{}", w.repo());
        let c = runner(w, "c");
        let t = build(&c, &w.mirror, "cache-c", "out-c", &["--cache-from", &from]);
        show("c", &t);
        let warned = cache_warnings(&t);
        assert_eq!(warned.len(), 1, "{t}");
        assert!(warned[0].contains("blob sha256:") && warned[0].contains("do not match"), "{t}");
        assert_eq!(files(&w.out()), files(&c.join("out-c")));
    }
}

/// `GET` a registry path, the body as JSON.
fn get_json(host: &str, path: &str) -> Value {
    let mut r = ureq::get(format!("http://{host}{path}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .unwrap();
    serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap()
}

needs! { [has_docker_registry, has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs `docker-registry` on PATH, ../shared/debian, ../shared/debian-essential, runc";
    /// A repository read first whose tag of one configure step names the
    /// manifest of a layer step (its blobs all there): refused with a
    /// warning; the step then comes from the good cache, and the output is
    /// the same.
    fn remote_cache_a_manifest_of_another_step_is_refused() {
        let w = warm();
        let host = &w.reg.host;
        let tags = get_json(host, &format!("/v2/{}/tags/list", w.repo()));
        let tags: Vec<&str> = tags["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let victim = *tags.iter().find(|t| t.starts_with("configure-")).expect("a configure tag");
        let other = *tags.iter().find(|t| t.starts_with("layer-")).expect("a layer tag");
        let m = get_json(host, &format!("/v2/{}/manifests/{other}", w.repo()));
        let bad = w.reg.destination("bad");
        let bad_repo = bad.split_once('/').unwrap().1;
        let blobs = m["layers"].as_array().unwrap().iter().chain([&m["config"]]);
        for b in blobs {
            let d = b["digest"].as_str().unwrap();
            let url = format!("http://{host}/v2/{bad_repo}/blobs/uploads/?mount={d}&from={}", w.repo());
            let r = ureq::post(url).send_empty().unwrap();
            assert_eq!(r.status(), 201, "mount {d}");
        }
        let r = ureq::put(format!("http://{host}/v2/{bad_repo}/manifests/{victim}"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .send(serde_json::to_vec(&m).unwrap())
            .unwrap();
        assert_eq!(r.status(), 201);
        let d = runner(w, "d");
        let t = build(&d, &w.mirror, "cache-d", "out-d", &["--cache-from", &bad, "--cache-to", &w.cache]);
        show("d", &t);
        let warned = cache_warnings(&t);
        let key = victim.trim_start_matches("configure-");
        assert_eq!(warned.len(), 1, "{t}");
        assert!(warned[0].contains(key) && warned[0].contains("not of this one"), "{t}");
        assert_eq!(files(&w.out()), files(&d.join("out-d")));
    }
}

needs! { [has_docker_registry, has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs `docker-registry` on PATH, ../shared/debian, ../shared/debian-essential, runc";
    /// A registry that stops answering after some requests: one warning,
    /// the rest is built locally, the same bytes.
    fn remote_cache_a_registry_that_dies_mid_build_ends_in_a_local_build() {
        let w = warm();
        let via = proxy(w.reg.host.clone(), |n, _, _| match n >= 40 {
            true => Fault::Drop,
            false => Fault::Pass,
        });
        let from = format!("{via}/{}", w.repo());
        let e = runner(w, "e");
        let t = build(&e, &w.mirror, "cache-e", "out-e", &["--cache-from", &from]);
        show("e", &t);
        let warned = cache_warnings(&t);
        assert_eq!(warned.len(), 1, "{t}");
        assert!(warned[0].contains("stopped answering"), "{t}");
        assert!(steps_line(&t).contains("(remote "), "{t}");
        assert_eq!(files(&w.out()), files(&e.join("out-e")));
    }
}

/// A synthetic tree (no scripts, no build stage) in `dir`.
fn small_tree(dir: &Path) {
    let debs = vec![
        pkg("liba", "1.0", "a", b"a\n"),
        pkg("libb", "1.0", "b", b"b\n"),
        pkg("appbin", "1.0", "app", b"app\n"),
    ];
    synthetic_tree(
        dir,
        &[("liba", "1.0"), ("libb", "1.0")],
        &[("appbin", "1.0")],
        &debs,
    );
}

fn build_small(dir: &Path, cache: &str, out: &str, extra: &[&str]) -> String {
    let o = run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args([
            "build", "recipes", "--mirror", "mirror", "--no-apt", "--cache", cache, "--out", out,
        ])
        .args(extra));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

/// No registry at all (a closed port): one warning, then a local build
/// with the same bytes; no request is tried per step.
#[test]
fn remote_cache_no_registry_is_one_warning_and_a_local_build() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    small_tree(dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("127.0.0.1:{port}/nobody/cache");
    let local = build_small(dir, "c1", "out1", &[]);
    assert!(cache_warnings(&local).is_empty(), "{local}");
    let t = build_small(
        dir,
        "c2",
        "out2",
        &["--cache-from", &closed, "--cache-to", &closed],
    );
    let warned = cache_warnings(&t);
    assert_eq!(warned.len(), 1, "{t}");
    assert!(warned[0].contains("cannot reach the registry"), "{t}");
    assert!(!steps_line(&t).contains("(remote"), "{t}");
    assert_eq!(files(&dir.join("out1")), files(&dir.join("out2")));
}

/// The base recipe's `[cache]` is used, `--no-remote-cache` ignores it, and
/// a bad value is refused with its file and line.
#[test]
fn remote_cache_the_recipe_table_is_read_and_can_be_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    small_tree(dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = dir.join("base/base.toml");
    let text0 = std::fs::read_to_string(&base).unwrap();
    std::fs::write(
        &base,
        format!("{text0}\n[cache]\nfrom = \"127.0.0.1:{port}/x/c\"\n"),
    )
    .unwrap();
    let t = build_small(dir, "c1", "out1", &[]);
    assert_eq!(cache_warnings(&t).len(), 1, "{t}");
    let t = build_small(dir, "c2", "out2", &["--no-remote-cache"]);
    assert!(cache_warnings(&t).is_empty(), "{t}");
    std::fs::write(&base, format!("{text0}\n[cache]\nto = \"https://x/c\"\n")).unwrap();
    let o = run(imgforge().current_dir(dir).args([
        "build", "recipes", "--mirror", "mirror", "--no-apt", "--cache", "c3", "--out", "o3",
    ]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let line = text0.lines().count() + 3;
    assert!(
        t.contains(&format!("base.toml:{line}:")) && t.contains("cache.to"),
        "{t}"
    );
}

needs! { [has_docker_registry] "needs `docker-registry` on PATH";
    /// The synthetic tree through a registry: uploaded by one runner,
    /// fetched by another, which runs no layer; the same bytes.
    fn remote_cache_round_trip_of_a_small_tree() {
        let Some(reg) = registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        small_tree(dir);
        let cache = reg.destination("small");
        let a = build_small(dir, "ca", "outa", &["--cache-to", &cache]);
        assert!(cache_warnings(&a).is_empty(), "{a}");
        let b = build_small(dir, "cb", "outb", &["--cache-from", &cache]);
        assert!(cache_warnings(&b).is_empty(), "{b}");
        for kind in ["layer", "lint", "sbom"] {
            let (reused, all) = kind_counts(&b, kind).unwrap_or_else(|| panic!("no {kind}: {b}"));
            assert_eq!(reused, all, "{kind} ran on runner B: {b}");
        }
        assert!(steps_line(&b).contains("(remote "), "{b}");
        assert_eq!(files(&dir.join("outa")), files(&dir.join("outb")));
    }
}
