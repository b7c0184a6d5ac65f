//! `imgforge push` against a real registry (Debian's `docker-registry`,
//! Distribution 2.8) on 127.0.0.1: a synthetic layout (no fixture needed),
//! then the example images pushed twice, pulled by digest with docker and run.
//!
//! `.ci/run` starts a registry and sets `IMGFORGE_TEST_REGISTRY`; without
//! it each test starts its own `docker-registry` on a free port.

use crate::common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A registry to push to, and a namespace no other test uses.
pub struct Registry {
    pub host: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

static NS: AtomicUsize = AtomicUsize::new(0);

impl Registry {
    /// `host/<unique namespace>`, so repeated runs on a shared registry
    /// start from empty repositories.
    pub fn destination(&self, what: &str) -> String {
        let n = NS.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{}/t{}-{nanos}-{n}/{what}", self.host, std::process::id())
    }
}

fn wait_listening(host: &str) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(host).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// The CI registry, or a fresh `docker-registry` on a free port.
pub fn registry() -> Option<Registry> {
    if let Ok(h) = std::env::var("IMGFORGE_TEST_REGISTRY") {
        assert!(
            wait_listening(&h),
            "IMGFORGE_TEST_REGISTRY={h} is not listening"
        );
        return Some(Registry {
            host: h,
            child: None,
            _dir: None,
        });
    }
    if !require_tool("docker-registry") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let r = Registry {
        host,
        child: Some(child),
        _dir: Some(dir),
    };
    assert!(wait_listening(&r.host), "docker-registry did not start");
    Some(r)
}

/// `imgforge push --format json`, returning the summary.
pub fn push(layout: &Path, dest: &str, extra: &[&str]) -> Result<Value, String> {
    let o = run(imgforge()
        .args(["push", "--format", "json", "--to", dest, "--out"])
        .arg(layout)
        .args(extra));
    if !o.status.success() {
        return Err(text(&o));
    }
    Ok(serde_json::from_slice(&o.stdout).expect("push JSON"))
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A two-image layout sharing one layer: `a:1` (shared) and `b:1`
/// (shared + own). Returns the layout and the manifest digests.
fn synthetic_layout(dir: &Path) -> (PathBuf, Vec<String>) {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> Value {
        let d = sha(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        json!({"digest": d, "size": bytes.len()})
    };
    let layer = |content: &str| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "file.txt", content.as_bytes())
            .unwrap();
        b.into_inner().unwrap()
    };
    let shared = put(&layer("shared"));
    let own = put(&layer("own"));
    let mut manifests = Vec::new();
    let mut digests = Vec::new();
    for (name, layers) in [("a", vec![&shared]), ("b", vec![&shared, &own])] {
        let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
        let config = put(&serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap());
        let ls: Vec<Value> = layers
            .iter()
            .map(|l| {
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": l["digest"], "size": l["size"]})
            })
            .collect();
        let m = put(&serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config["digest"], "size": config["size"]},
            "layers": ls,
        }))
        .unwrap());
        digests.push(m["digest"].as_str().unwrap().to_string());
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m["digest"], "size": m["size"],
            "annotations": {"org.opencontainers.image.ref.name": format!("{name}:1")},
        }));
    }
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
    (layout, digests)
}

fn totals(v: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap();
    (
        n("blobs_uploaded"),
        n("bytes_uploaded"),
        n("blobs_mounted"),
        n("blobs_skipped"),
    )
}

/// The manifest as the registry serves it, by digest.
fn fetch_manifest(host: &str, repo: &str, digest: &str) -> Vec<u8> {
    let mut resp = ureq::get(format!("http://{host}/v2/{repo}/manifests/{digest}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .expect("GET manifest");
    resp.body_mut().read_to_vec().unwrap()
}

needs! { [has_docker_registry] "needs `docker-registry` on PATH";
    fn push_synthetic_layout_twice_mounts_then_skips() {
        let Some(reg) = registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let (layout, digests) = synthetic_layout(tmp.path());
        let dest = reg.destination("syn");
        let first = push(&layout, &dest, &[]).unwrap();
        // a:1 uploads its config + the shared layer; b:1 mounts the shared
        // layer from a and uploads its config + own layer.
        let (up, bytes, mounted, skipped) = totals(&first);
        assert_eq!((up, mounted, skipped), (4, 1, 0), "{first:#}");
        assert!(bytes > 0);
        let second = push(&layout, &dest, &[]).unwrap();
        assert_eq!(totals(&second), (0, 0, 0, 5), "{second:#}");
        for i in second["images"].as_array().unwrap() {
            assert_eq!(i["manifest_sent"], false, "{i}");
        }
        // Digests preserved: the registry serves the layout's manifest bytes.
        for (img, digest) in first["images"].as_array().unwrap().iter().zip(&digests) {
            assert_eq!(img["digest"].as_str().unwrap(), digest);
            let repo = img["repository"].as_str().unwrap();
            assert_eq!(&sha(&fetch_manifest(&reg.host, repo, digest)), digest);
        }
    }
}

needs! { [has_docker_registry] "needs `docker-registry` on PATH";
    fn push_corrupt_blob_names_the_blob() {
        let Some(reg) = registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _) = synthetic_layout(tmp.path());
        // Flip one byte of the shared layer: same size, wrong content.
        let idx: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let m = idx["manifests"][0]["digest"].as_str().unwrap();
        let mv: Value = serde_json::from_slice(
            &std::fs::read(layout.join("blobs/sha256").join(&m[7..])).unwrap(),
        )
        .unwrap();
        let layer = mv["layers"][0]["digest"].as_str().unwrap().to_string();
        let p = layout.join("blobs/sha256").join(&layer[7..]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let err = push(&layout, &reg.destination("bad"), &["--image", "a"]).unwrap_err();
        assert!(err.contains(&format!("blob {layer}")), "{err}");
        assert!(err.contains("upload answered HTTP 400"), "{err}");
        assert!(err.contains("help: "), "{err}");
    }
}

#[test]
fn push_unreachable_registry_fails_per_blob_after_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = synthetic_layout(tmp.path());
    // Nothing listens on port 1 of loopback.
    let t = std::time::Instant::now();
    let err = push(
        &layout,
        "127.0.0.1:1/x",
        &["--retries", "2", "--image", "a"],
    )
    .unwrap_err();
    assert!(err.contains("error: blob sha256:"), "{err}");
    assert!(
        err.contains("HEAD http://127.0.0.1:1/v2/x/a/blobs/"),
        "{err}"
    );
    // Two retries back off 250 ms then 500 ms.
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(700),
        "{err}"
    );
}

#[test]
fn push_rejects_unknown_image_and_bad_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = synthetic_layout(tmp.path());
    let err = push(&layout, "127.0.0.1:1/x", &["--image", "zzz"]).unwrap_err();
    insta::assert_snapshot!("push_unknown_image", err);
    let err = push(&layout, "https://reg.example/x", &[]).unwrap_err();
    insta::assert_snapshot!("push_bad_destination", err);
    let err = push(&tmp.path().join("nothing"), "127.0.0.1:1/x", &[]).unwrap_err();
    assert!(
        err.contains("index.json") && err.contains("help: "),
        "{err}"
    );
}

/// Is a docker daemon there? (Prints SKIP, or panics when strict.)
fn docker_ready() -> bool {
    if !require_tool("docker") {
        return false;
    }
    let o = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    let ok = o.as_ref().is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "this test needs a reachable docker daemon";
        crate::common::missing(msg);
    }
    ok
}

needs! { [has_docker, has_docker_registry, has_fixture_debian, has_fixture_debian_essential]
    "needs `docker` on PATH, `docker-registry` on PATH, ../shared/debian, ../shared/debian-essential";
    fn push_examples_twice_then_docker_pulls_by_digest_and_runs_hello() {
        let Some(fixture) = crate::common::examples_mirror() else {
            return;
        };
        let Some(reg) = registry() else { return };
        let tmp = copy_examples();
        let out = tmp.path().join("out");
        let o = run(imgforge()
            .args(["build", "recipes", "--no-apt", "-q", "--mirror"])
            .arg(&fixture)
            .arg("--out")
            .arg(&out)
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .current_dir(tmp.path()));
        assert!(o.status.success(), "{}", text(&o));
        let dest = reg.destination("ex");
        let t = std::time::Instant::now();
        let first = push(&out, &dest, &[]).unwrap();
        let t1 = t.elapsed();
        let t = std::time::Instant::now();
        let second = push(&out, &dest, &[]).unwrap();
        let t2 = t.elapsed();
        let (up, bytes, mounted, _) = totals(&first);
        eprintln!(
            "first push: {up} blobs, {bytes} bytes, {mounted} mounted, {:.2}s; second: {:?}, {:.2}s",
            t1.as_secs_f64(),
            totals(&second),
            t2.as_secs_f64()
        );
        assert_eq!(first["images"].as_array().unwrap().len(), 4);
        // Each image built on the base mounts the base's layers (every blob
        // the base uploaded but its config).
        let base_layers = first["images"][0]["blobs_uploaded"].as_u64().unwrap() - 1;
        assert_eq!(first["images"][0]["tag"], "bookworm-12.15");
        assert_eq!(mounted, 3 * base_layers, "{first:#}");
        let (up2, bytes2, mounted2, _) = totals(&second);
        assert_eq!((up2, bytes2, mounted2), (0, 0, 0), "{second:#}");
        let image = |name: &str| {
            first["images"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["repository"].as_str().unwrap().ends_with(name))
                .unwrap()
                .clone()
        };
        let hello = image("/hello");
        // Each image's SBOMs and provenance went up as referrers, listed by
        // the fallback tag (Distribution 2.8 has no referrers API).
        for i in first["images"].as_array().unwrap() {
            assert_eq!(i["referrers_sent"], 3, "{i:#}");
            let tag = i["digest"].as_str().unwrap().replace("sha256:", "sha256-");
            assert_eq!(i["referrers_tag"], tag.as_str(), "{i:#}");
        }
        // The digest the registry serves is the one in the layout's index.
        let index = std::fs::read_to_string(out.join("index.json")).unwrap();
        assert!(index.contains(hello["digest"].as_str().unwrap()));
        if !docker_ready() {
            return;
        }
        let pinned = hello["pinned"].as_str().unwrap();
        let o = run(Command::new("docker").args(["pull", "-q", pinned]));
        assert!(o.status.success(), "{}", text(&o));
        let o = run(Command::new("docker").args(["run", "--rm", pinned]));
        let _ = Command::new("docker").args(["rmi", pinned]).output();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "Hello from imgforge!"
        );
        // nginx keeps Debian's convention (command, no entrypoint): `nginx -t` runs.
        let nginx = image("/nginx");
        let pinned = nginx["pinned"].as_str().unwrap();
        let o = run(Command::new("docker").args(["run", "--rm", pinned, "nginx", "-t"]));
        let _ = Command::new("docker").args(["rmi", pinned]).output();
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("test is successful"), "{}", text(&o));
    }
}

needs! { [has_docker_registry] "needs `docker-registry` on PATH";
    /// The referrers `build` attaches (SPDX, CycloneDX, provenance) go up with
    /// each image; Distribution 2.8 has no referrers API, so the tag-schema
    /// fallback tag `sha256-<hex>` lists them, and the provenance is fetched
    /// back by digest, byte for byte. A second push sends none again.
    fn push_sends_referrers_listed_by_the_fallback_tag() {
        let Some(reg) = registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        crate::attest::tree(dir);
        crate::attest::build(dir, "out", None);
        let out = dir.join("out");
        let dest = reg.destination("ref");
        let first = push(&out, &dest, &[]).unwrap();
        let app = first["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["repository"].as_str().unwrap().ends_with("/app"))
            .unwrap()
            .clone();
        assert_eq!(app["referrers_sent"], 3, "{first:#}");
        let digest = app["digest"].as_str().unwrap();
        let tag = digest.replace("sha256:", "sha256-");
        assert_eq!(app["referrers_tag"], tag.as_str());
        let repo = app["repository"].as_str().unwrap();
        let mut resp = ureq::get(format!("http://{}/v2/{repo}/manifests/{tag}", reg.host))
            .header("Accept", "application/vnd.oci.image.index.v1+json")
            .call()
            .expect("GET the fallback tag");
        let index: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
        let mut types: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["artifactType"].as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(
            types,
            [
                "application/spdx+json",
                "application/vnd.cyclonedx+json",
                "application/vnd.in-toto+json"
            ]
        );
        // Fetch the provenance: its manifest names the image as subject, its
        // layer is the statement the build wrote.
        let prov = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["artifactType"] == "application/vnd.in-toto+json")
            .unwrap();
        let m: Value = serde_json::from_slice(&fetch_manifest(
            &reg.host,
            repo,
            prov["digest"].as_str().unwrap(),
        ))
        .unwrap();
        assert_eq!(m["subject"]["digest"], digest);
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let mut resp = ureq::get(format!("http://{}/v2/{repo}/blobs/{layer}", reg.host))
            .call()
            .expect("GET the provenance");
        assert_eq!(
            resp.body_mut().read_to_vec().unwrap(),
            std::fs::read(out.join("attest/app.provenance.json")).unwrap()
        );
        let second = push(&out, &dest, &[]).unwrap();
        for i in second["images"].as_array().unwrap() {
            assert_eq!(i["referrers_sent"], 0, "{second:#}");
        }
        assert_eq!(totals(&second).0, 0, "{second:#}");
    }
}

/// What the fault proxy does to request number `n` (from 0).
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Forward it and its answer.
    Pass,
    /// Answer 503 without forwarding (a registry overloaded).
    Unavailable,
    /// Forward it, then close the connection without the answer (a
    /// registry that acted and died before replying).
    Drop,
}

/// A loopback proxy before `upstream` that sees one request per connection
/// (it asks both sides to close after each exchange) and applies `plan` to
/// the n-th request. Returns its address; it serves until the test ends.
fn fault_proxy(upstream: String, plan: fn(usize) -> Fault) -> String {
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
                let mut len = 0usize;
                let mut chunked = false;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                        chunked = true;
                    }
                    if lower.starts_with("connection:") {
                        continue;
                    }
                    if line == "\r\n" {
                        head.push_str("Connection: close\r\n\r\n");
                        break;
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body)?;
                // A chunked body (ureq sends an empty one so): passed on as is.
                while chunked {
                    let mut size = String::new();
                    r.read_line(&mut size)?;
                    body.extend_from_slice(size.as_bytes());
                    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    let mut chunk = vec![0; n + 2];
                    r.read_exact(&mut chunk)?;
                    body.extend_from_slice(&chunk);
                    chunked = n > 0;
                }
                let fault = plan(n);
                if fault == Fault::Unavailable {
                    client.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )?;
                    return Ok(());
                }
                let mut up = std::net::TcpStream::connect(&upstream)?;
                up.write_all(head.as_bytes())?;
                up.write_all(&body)?;
                let mut answer = Vec::new();
                up.read_to_end(&mut answer)?;
                if fault == Fault::Drop {
                    return client.shutdown(std::net::Shutdown::Both);
                }
                // The upstream answered with `Connection: close` (asked for).
                client.write_all(&answer)
            });
        }
    });
    addr
}

/// Every tag of `repo` the registry lists names a manifest it serves,
/// and every blob that manifest names is there.
fn tags_complete(host: &str, repo: &str) {
    let tags: Value = match ureq::get(format!("http://{host}/v2/{repo}/tags/list")).call() {
        Ok(mut r) => serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap(),
        Err(_) => return, // the repository was never created: nothing tagged
    };
    for tag in tags["tags"].as_array().into_iter().flatten() {
        let tag = tag.as_str().unwrap();
        let m: Value = serde_json::from_slice(&fetch_manifest(host, repo, tag)).unwrap();
        let blobs = m["layers"].as_array().unwrap().iter().chain([&m["config"]]);
        for b in blobs {
            let d = b["digest"].as_str().unwrap();
            let st = ureq::head(format!("http://{host}/v2/{repo}/blobs/{d}")).call();
            assert!(
                st.is_ok(),
                "tag {repo}:{tag} names blob {d}, which the registry lacks"
            );
        }
    }
}

needs! { [has_docker_registry] "needs `docker-registry` on PATH";
    /// A registry that answers 503 now and then, or acts and dies before it
    /// answers: the push either completes on retry or fails, never leaving a
    /// tag that names a missing blob; a second push straight to the registry
    /// completes and sends again only what had not arrived.
    fn push_through_a_faulty_registry_completes_or_fails_cleanly() {
        let Some(reg) = registry() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let (layout, digests) = synthetic_layout(tmp.path());
        let plans: [fn(usize) -> Fault; 3] = [
            |n| if n % 3 == 1 { Fault::Unavailable } else { Fault::Pass },
            |n| if n % 4 == 2 { Fault::Drop } else { Fault::Pass },
            |n| if n >= 6 { Fault::Drop } else { Fault::Pass },
        ];
        for (i, plan) in plans.into_iter().enumerate() {
            let proxy = fault_proxy(reg.host.clone(), plan);
            let dest = reg.destination(&format!("fault{i}"));
            let via = dest.replacen(&reg.host, &proxy, 1);
            let first = push(&layout, &via, &["--retries", "3"]);
            let ns = dest.trim_start_matches(&format!("{}/", reg.host)).to_string();
            for img in ["a", "b"] {
                tags_complete(&reg.host, &format!("{ns}/{img}"));
            }
            match i {
                // Every 503 is retried, and an upload whose answer was lost
                // is found to have arrived: the push completes.
                0 | 1 => assert!(first.is_ok(), "plan {i}: {first:?}"),
                // The registry gone for good mid-push: an error.
                2 => assert!(first.is_err(), "plan 2: {first:?}"),
                _ => {}
            }
            eprintln!("plan {i}: {:?}", first.as_ref().map(|_| "completed"));
            let second = push(&layout, &dest, &[]).unwrap_or_else(|e| panic!("plan {i}: {e}"));
            let (up, _, mounted, skipped) = totals(&second);
            match &first {
                Ok(v) => {
                    assert_eq!(up + mounted, 0, "plan {i}: complete, yet sent again: {second:#}");
                    assert_eq!(totals(v).0 + totals(v).2 + totals(v).3, 5, "plan {i}: {v:#}");
                }
                Err(e) => assert!(e.contains("help: "), "plan {i}: {e}"),
            }
            assert_eq!(up + mounted + skipped, 5, "plan {i}: {second:#}");
            for (img, digest) in second["images"].as_array().unwrap().iter().zip(&digests) {
                assert_eq!(img["digest"].as_str().unwrap(), digest, "plan {i}");
            }
        }
    }
}
