//! The archive client against test repositories served on 127.0.0.1 by a
//! tiny HTTP server thread, signed with keys generated here by the `pgp`
//! crate: a good signature builds; a changed Packages, a changed InRelease,
//! an unknown key and a changed `.deb` are each refused naming the file and
//! the check, with nothing written; snapshot fallback; vendor round trip;
//! `update` with changelogs, keeping the recipe's comments.

use crate::common::{imgforge, run, text};
use crate::debgen::{self, Deb, T};
use pgp::composed::{CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedSecretKey};
use pgp::types::Password;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Serves files under `root` over HTTP/1.1 (GET only, one response per
/// connection). Counts requests.
pub(crate) struct Server {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl Server {
    pub(crate) fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let (root, count) = (root.to_path_buf(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let (root, count) = (root.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap_or(0);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let path = line.split_whitespace().nth(1).unwrap_or("/");
                    let file = root.join(path.trim_start_matches('/'));
                    let resp = match std::fs::read(&file) {
                        Ok(b) if file.is_file() => {
                            let mut v = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .into_bytes();
                            v.extend(b);
                            v
                        }
                        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    };
                    let _ = s.write_all(&resp);
                });
            }
        });
        Server { port, requests }
    }
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
    pub(crate) fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

pub(crate) fn key() -> SignedSecretKey {
    let mut rng = rand::thread_rng();
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("imgforge test <test@invalid>".into())
        .build()
        .unwrap();
    params
        .generate(&mut rng)
        .unwrap()
        .sign(&mut rng, &Password::empty())
        .unwrap()
}

pub(crate) fn write_keyring(key: &SignedSecretKey, path: &Path) {
    let public = key.signed_public_key();
    std::fs::write(path, public.to_armored_string(None.into()).unwrap()).unwrap();
}

pub(crate) fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A signed archive at `root` (suite `stable`, component `main`) holding
/// `debs`; `changelogs` are added to the named packages' debs.
fn archive(root: &Path, debs: &[Deb], key: &SignedSecretKey) {
    debgen::mirror(root, debs);
    let packages = std::fs::read(root.join("Packages")).unwrap();
    std::fs::remove_file(root.join("Packages")).unwrap();
    let dir = root.join("dists/stable/main/binary-amd64");
    std::fs::create_dir_all(&dir).unwrap();
    let gz = debgen::gz(&packages);
    std::fs::write(dir.join("Packages"), &packages).unwrap();
    std::fs::write(dir.join("Packages.gz"), &gz).unwrap();
    let release = format!(
        "Origin: test\nSuite: stable\nCodename: stable\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages\n {} {} main/binary-amd64/Packages.gz\n",
        sha(&packages),
        packages.len(),
        sha(&gz),
        gz.len()
    );
    sign_release(root, &release, key);
}

pub(crate) fn sign_release(root: &Path, release: &str, key: &SignedSecretKey) {
    let msg = CleartextSignedMessage::sign(rand::thread_rng(), release, &**key, &Password::empty())
        .unwrap();
    std::fs::write(
        root.join("dists/stable/InRelease"),
        msg.to_armored_string(None.into()).unwrap(),
    )
    .unwrap();
}

/// A tree using the archive at `uri` (keyring `key.asc` beside base.toml).
fn tree(dir: &Path, uri: &str, pins: &str, snapshot: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    let snap = snapshot
        .map(|s| format!("\n[source.snapshot]\ntimestamp = \"20250101T000000Z\"\nurl = \"{s}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("base/base.toml"),
        format!(
            "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 1700000000\n\n\
             [source]\narch = \"amd64\"\n\n[[source.archive]]\nuri = \"{uri}\"\nsuites = [\"stable\"]\ncomponents = [\"main\"]\nkeyring = \"key.asc\"\n{snap}\n[packages]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("recipes/app.toml"),
        format!("# the app image\n[image]\nname = \"app\"\ntag = \"1.0\"\n\n[packages]\n{pins}\n"),
    )
    .unwrap();
    dir.join("recipes")
}

fn debs() -> Vec<Deb> {
    vec![
        Deb::new("app", "1.0")
            .field("Depends", "lib")
            .entry(T::File("./usr/share/app", b"app\n", 0o644)),
        Deb::new("lib", "2.0").entry(T::File("./usr/share/lib", b"lib\n", 0o644)),
    ]
}

fn cmd(args: &[&str], cwd: &Path) -> std::process::Output {
    run(imgforge().args(args).current_dir(cwd))
}

struct Repo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: Server,
    key: SignedSecretKey,
}

fn repo(debs: &[Deb]) -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    std::fs::create_dir_all(&dir).unwrap();
    let key = key();
    archive(&dir, debs, &key);
    let server = Server::start(&dir);
    Repo {
        _tmp: tmp,
        dir,
        server,
        key,
    }
}

fn project(r: &Repo, pins: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    tree(t.path(), r.server.url("").trim_end_matches('/'), pins, None);
    write_keyring(&r.key, &t.path().join("base/key.asc"));
    t
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_fixture_debian_index]
    "needs ../shared/debian, ../shared/debian-essential, ../shared/debian-index";
    fn signed_archive_builds_and_a_second_build_downloads_nothing() {
        let r = repo(&debs());
        let t = project(&r, "app = \"1.0\"");
        let o = cmd(
            &["build", "recipes", "--cache", "cache", "--out", "out", "-q"],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(t.path().join("out/index.json").is_file());
        let lock = std::fs::read_to_string(t.path().join("recipes/imgforge.lock")).unwrap();
        assert!(lock.contains("name = \"lib\""), "{lock}");
        let stored = std::fs::read_dir(t.path().join("cache/store/sha256"))
            .unwrap()
            .count();
        assert_eq!(stored, 2);
        let before = r.server.count();
        let o = cmd(
            &[
                "build", "recipes", "--cache", "cache", "--out", "out2", "-q",
            ],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(r.server.count(), before, "the second build made requests");
    }
}

/// Run `lock`, expect failure naming `file` and `check`, and nothing written.
fn refused(r: &Repo, file: &str, check: &str) {
    let t = project(r, "app = \"1.0\"");
    let o = cmd(&["lock", "recipes", "--cache", "cache", "-q"], t.path());
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains(file), "does not name {file}: {out}");
    assert!(
        out.contains(check),
        "does not name the check {check:?}: {out}"
    );
    assert!(!t.path().join("recipes/imgforge.lock").exists());
    let cached: Vec<_> = walkdir::WalkDir::new(t.path().join("cache"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(cached.is_empty(), "written: {cached:?}");
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn a_changed_packages_file_is_refused() {
        let r = repo(&debs());
        let p = r.dir.join("dists/stable/main/binary-amd64");
        let mut text = std::fs::read_to_string(p.join("Packages")).unwrap();
        text = text.replace("Version: 2.0", "Version: 2.1");
        std::fs::write(p.join("Packages.gz"), debgen::gz(text.as_bytes())).unwrap();
        refused(
            &r,
            "main/binary-amd64/Packages.gz",
            "sha256 check failed against the SHA256 signed in",
        );
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn a_changed_inrelease_is_refused() {
        let r = repo(&debs());
        let p = r.dir.join("dists/stable/InRelease");
        let s = std::fs::read_to_string(&p)
            .unwrap()
            .replace("Origin: test", "Origin: evil");
        std::fs::write(&p, s).unwrap();
        refused(&r, "dists/stable/InRelease", "signature check failed");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn an_unknown_key_is_refused() {
        let r = repo(&debs());
        let other = key();
        let release = std::fs::read_to_string(r.dir.join("dists/stable/InRelease")).unwrap();
        let (msg, _) = CleartextSignedMessage::from_string(&release).unwrap();
        sign_release(&r.dir, &msg.signed_text().replace("\r\n", "\n"), &other);
        refused(
            &r,
            "dists/stable/InRelease",
            "none of its 1 signature(s) verifies",
        );
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn a_changed_deb_is_refused_and_not_stored() {
        let r = repo(&debs());
        let t = project(&r, "app = \"1.0\"");
        let o = cmd(&["lock", "recipes", "--cache", "cache", "-q"], t.path());
        assert!(o.status.success(), "{}", text(&o));
        // Same name, different bytes.
        Deb::new("lib", "2.0")
            .entry(T::File("./usr/share/lib", b"evil\n", 0o644))
            .write(&r.dir.join("pool"));
        let o = cmd(
            &["build", "recipes", "--cache", "cache", "--out", "out", "-q"],
            t.path(),
        );
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(out.contains("pool/lib_2.0_amd64.deb"), "{out}");
        assert!(
            out.contains("sha256 check failed against the signed Packages index"),
            "{out}"
        );
        assert!(!t.path().join("out").exists());
        let stored: Vec<_> = std::fs::read_dir(t.path().join("cache/store/sha256"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(stored.len() <= 1, "{stored:?}");
    }
}

#[test]
fn a_version_gone_from_the_live_archive_comes_from_the_snapshot() {
    // Live: lib 2.1 only. Snapshot (…/snap/<archive>/<timestamp>): lib 2.0.
    let key = key();
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    let live = srv.join("live");
    let snap = srv.join("snap/live/20250101T000000Z");
    archive(&live, &[Deb::new("lib", "2.1")], &key);
    archive(&snap, &[Deb::new("lib", "2.0")], &key);
    let server = Server::start(&srv);
    let t = tempfile::tempdir().unwrap();
    tree(
        t.path(),
        &server.url("live"),
        "lib = \"2.0\"",
        Some(&server.url("snap/{archive}/{timestamp}")),
    );
    write_keyring(&key, &t.path().join("base/key.asc"));
    let o = cmd(
        &["build", "recipes", "--cache", "cache", "--out", "out", "-q"],
        t.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let lock = std::fs::read_to_string(t.path().join("recipes/imgforge.lock")).unwrap();
    assert!(lock.contains("snapshot = \"20250101T000000Z "), "{lock}");
    assert!(lock.contains("version = \"2.0\""), "{lock}");
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn a_missing_version_without_snapshot_is_diagnosed_before_download() {
        let r = repo(&debs());
        let t = project(&r, "app = \"1.0\"\nlib = \"1.5\"");
        let o = cmd(&["lock", "recipes", "--cache", "cache", "-q"], t.path());
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(out.contains("lib 1.5 (app): the sources have 2.0"), "{out}");
        assert!(out.contains("imgforge update"), "{out}");
        assert!(!t.path().join("cache/store").exists(), "downloaded a .deb");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_fixture_debian_index]
    "needs ../shared/debian, ../shared/debian-essential, ../shared/debian-index";
    fn vendor_then_mirror_build_is_byte_identical() {
        let r = repo(&debs());
        let t = project(&r, "app = \"1.0\"");
        let o = cmd(
            &["build", "recipes", "--cache", "cache", "--out", "a", "-q"],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        let o = cmd(
            &["vendor", "mirror", "recipes", "--cache", "cache", "-q"],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        let sums = std::fs::read_to_string(t.path().join("mirror/SHA256SUMS")).unwrap();
        assert_eq!(sums.lines().count(), 2, "{sums}");
        let o = cmd(
            &[
                "build", "recipes", "--mirror", "mirror", "--no-apt", "--cache", "cache2", "--out",
                "b", "--locked", "-q",
            ],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        let a = std::fs::read(t.path().join("a/index.json")).unwrap();
        let b = std::fs::read(t.path().join("b/index.json")).unwrap();
        assert_eq!(a, b);
        for e in std::fs::read_dir(t.path().join("a/blobs/sha256")).unwrap() {
            let e = e.unwrap();
            let other = t.path().join("b/blobs/sha256").join(e.file_name());
            assert_eq!(
                std::fs::read(e.path()).unwrap(),
                std::fs::read(other).unwrap()
            );
        }
    }
}

fn changelog_deb(version: &str, log: &str) -> Deb {
    let gz: &'static [u8] = Box::leak(debgen::gz(log.as_bytes()).into_boxed_slice());
    Deb::new("lib", version)
        .entry(T::Dir("./usr/share/doc/", 0o755))
        .entry(T::Dir("./usr/share/doc/lib/", 0o755))
        .entry(T::File(
            "./usr/share/doc/lib/changelog.Debian.gz",
            gz,
            0o644,
        ))
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn update_shows_changelogs_and_keeps_comments() {
        let log = "lib (2.1) stable-security; urgency=high\n\n  * Fix CVE-2026-12345 (overflow).\n\n -- M <m@invalid>  Mon, 02 Feb 2026 00:00:00 +0000\n\nlib (2.0) stable; urgency=low\n\n  * Initial.\n\n -- M <m@invalid>  Mon, 01 Jan 2024 00:00:00 +0000\n";
        let r = repo(&[
            Deb::new("app", "1.0").field("Depends", "lib"),
            changelog_deb("2.0", log),
            changelog_deb("2.1", log),
        ]);
        let t = project(
            &r,
            "app = \"1.0\"\n# keep: pinned for the test\nlib = \"2.0\"  # trailing",
        );
        let recipe = t.path().join("recipes/app.toml");
        let before = std::fs::read_to_string(&recipe).unwrap();
        let o = cmd(
            &["update", "recipes", "--cache", "cache", "--dry-run"],
            t.path(),
        );
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("lib 2.0 -> 2.1"), "{out}");
        assert!(out.contains(" stable)"), "{out}");
        assert!(out.contains("CVEs: CVE-2026-12345"), "{out}");
        assert!(out.contains("| lib (2.1) stable-security"), "{out}");
        assert!(!out.contains("| lib (2.0) stable"), "{out}");
        assert_eq!(
            std::fs::read_to_string(&recipe).unwrap(),
            before,
            "dry run wrote"
        );
        assert!(!t.path().join("recipes/imgforge.lock").exists());

        let o = cmd(&["update", "recipes", "--cache", "cache", "-q"], t.path());
        assert!(o.status.success(), "{}", text(&o));
        let after = std::fs::read_to_string(&recipe).unwrap();
        assert_eq!(after, before.replace("lib = \"2.0\"", "lib = \"2.1\""));
        let o = cmd(
            &[
                "build", "recipes", "--cache", "cache", "--locked", "--out", "o", "-q",
            ],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_fixture_debian_index]
    "needs ../shared/debian, ../shared/debian-essential, ../shared/debian-index";
    fn gc_keeps_what_the_locks_reference() {
        let r = repo(&debs());
        let t = project(&r, "app = \"1.0\"");
        let o = cmd(
            &["build", "recipes", "--cache", "cache", "--out", "out", "-q"],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        let store = t.path().join("cache/store/sha256");
        let stray = store.join(format!("{}.deb", "0".repeat(64)));
        std::fs::write(&stray, b"old").unwrap();
        let o = cmd(
            &["gc", "recipes", "--cache", "cache", "--dry-run"],
            t.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("would remove 1"), "{}", text(&o));
        assert!(stray.exists());
        let o = cmd(
            &[
                "gc",
                "recipes",
                "--cache",
                "cache",
                "--max-size",
                "100000000",
            ],
            t.path(),
        );
        assert!(o.status.success() && stray.exists(), "{}", text(&o));
        let o = cmd(&["gc", "recipes", "--cache", "cache"], t.path());
        assert!(o.status.success(), "{}", text(&o));
        assert!(!stray.exists());
        assert_eq!(std::fs::read_dir(&store).unwrap().count(), 2);
    }
}
