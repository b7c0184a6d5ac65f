//! Build stages in the sandbox (`imgforge::sandbox`).
//!
//! Real-runtime tests build a tiny root from the fixture's `busybox-static`
//! (merged-/usr: the binary lands at `/usr/bin/busybox`, plus a
//! `/usr/bin/sh -> busybox` link so shell steps work) and run steps in runc;
//! they skip without `runc` or the fixture. The hostile-layer and cache-key
//! tests need neither.

use crate::common;
use imgforge::layer::package::{PackageInput, PackageOptions, merged_usr_entries, package_entries};
use imgforge::layer::{self, Compression, Content, Entry, Kind, WriteOptions};
use imgforge::recipe::{Copy, Owner, Step};
use imgforge::sandbox::{self, SandboxError, SandboxOptions, StageOutput, StageSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

const SDE: u64 = 1_700_000_000;
const BUSYBOX: &str = "/usr/bin/busybox";

fn sh(script: &str) -> Step {
    Step::Exec(vec![
        BUSYBOX.into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ])
}

/// A busybox-only layer written into `blobs`, or `None` (skip).
fn busybox_layer(blobs: &Path) -> Option<PathBuf> {
    let fixture = common::fixture()?;
    let deb = std::fs::read_dir(fixture.join("pool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("busybox-static_"))
        })
        .expect("busybox-static in the fixture pool");
    let control = imgforge::deb::read_control(&deb, &Default::default()).unwrap();
    let pkg = PackageInput {
        name: "busybox-static".into(),
        deb,
        control,
    };
    let opts = PackageOptions {
        source_date_epoch: SDE,
        merged_usr: true,
        dpkg_metadata: false,
        limits: Default::default(),
    };
    std::fs::create_dir_all(blobs).unwrap();
    let mut entries = package_entries(&pkg, blobs, &opts).unwrap();
    assert!(
        entries.iter().any(|e| e.path == "usr/bin/busybox"),
        "busybox-static ships bin/busybox, merged to usr/bin/busybox"
    );
    entries.extend(merged_usr_entries("amd64", SDE));
    entries.push(Entry::symlink("usr/bin/sh", "busybox", SDE, "test"));
    let entries = layer::normalize(entries, &BTreeSet::new(), SDE).unwrap();
    let blob = layer::write_layer(
        &entries,
        &WriteOptions {
            blobs_dir: blobs.to_path_buf(),
            compression: Compression::Gzip(1),
        },
    )
    .unwrap();
    Some(blobs.join(blob.digest.strip_prefix("sha256:").unwrap()))
}

/// A temp dir with a busybox layer, when runc and the fixture are present.
struct Setup {
    tmp: tempfile::TempDir,
    layer: PathBuf,
}

fn setup() -> Option<Setup> {
    if !common::require_tool("runc") {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layer = busybox_layer(&tmp.path().join("blobs"))?;
    Some(Setup { tmp, layer })
}

impl Setup {
    fn spec(&self, name: &str, steps: Vec<Step>, artifacts: &[&str]) -> StageSpec {
        StageSpec {
            recipe: name.into(),
            layers: vec![self.layer.clone()],
            context: None,
            steps,
            env: BTreeMap::new(),
            artifacts: artifacts.iter().map(|s| s.to_string()).collect(),
            source_date_epoch: SDE,
            limits: Default::default(),
        }
    }
    fn opts(&self, cache: bool) -> SandboxOptions {
        SandboxOptions {
            cache_dir: cache.then(|| self.tmp.path().join("cache")),
            work_dir: self.tmp.path().join("work"),
            runtime: None,
            trees: None,
            logs: None,
            executor: Default::default(),
        }
    }
    /// No build root is left behind in the work dir.
    fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.tmp.path().join("work"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("imgforge-stage-"))
            .collect();
        assert!(left.is_empty(), "build roots left behind: {left:?}");
    }
}

fn artifact<'a>(out: &'a StageOutput, path: &str) -> &'a sandbox::Artifact {
    out.artifacts
        .iter()
        .find(|a| a.path == path)
        .unwrap_or_else(|| panic!("no artifact {path} in {:?}", out.artifacts))
}

fn content(out: &StageOutput, path: &str) -> String {
    std::fs::read_to_string(artifact(out, path).file.as_ref().unwrap()).unwrap()
}

fn sha_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_step_produces_artifacts_and_copies_map_them() {
        let Some(s) = setup() else { return };
        let mut spec =
            s.spec(
                "hello-app",
                vec![
                sh("echo hello > /out/hello && chmod 0750 /out/hello"),
                // A shell-string step runs through /bin/sh (bin -> usr/bin).
                Step::Shell(
                    "mkdir -p /out/lib/sub && echo a > /out/lib/a.so && echo b > /out/lib/sub/b.so \
                     && ln -s hello /out/link && echo x > /out/not-declared"
                        .into(),
                ),
                sh("env | sort > /out/env; hostname > /out/hostname; pwd > /out/pwd; id -u > /out/uid; \
                    cat /proc/net/dev > /out/netdev; umask > /out/umask"),
            ],
                &[
                    "/out/hello",
                    "/out/lib",
                    "/out/link",
                    "/out/env",
                    "/out/host*",
                    "/out/pwd",
                    "/out/uid",
                    "/out/netdev",
                    "/out/umask",
                ],
            );
        spec.env.insert("FOO".into(), "bar baz".into());
        let out = sandbox::run_stage(&spec, &s.opts(false)).unwrap();
        s.assert_clean();
        assert!(!out.cached);
        assert_eq!(out.cache_key.len(), 64);
        let paths: Vec<&str> = out.artifacts.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "out/env",
                "out/hello",
                "out/hostname",
                "out/lib",
                "out/lib/a.so",
                "out/lib/sub",
                "out/lib/sub/b.so",
                "out/link",
                "out/netdev",
                "out/pwd",
                "out/uid",
                "out/umask"
            ]
        );
        let hello = artifact(&out, "out/hello");
        assert_eq!(hello.kind, Kind::File);
        assert_eq!(hello.mode, 0o750);
        assert_eq!(hello.size, 6);
        assert_eq!(hello.sha256.as_deref(), Some(sha_hex(b"hello\n").as_str()));
        assert_eq!(
            std::fs::read(hello.file.as_ref().unwrap()).unwrap(),
            b"hello\n"
        );
        assert_eq!(
            artifact(&out, "out/link").kind,
            Kind::Symlink("hello".into())
        );
        assert_eq!(artifact(&out, "out/lib").kind, Kind::Dir);

        // The sandbox: fixed hostname, env, cwd, root uid, umask, loopback only.
        assert_eq!(content(&out, "out/hostname"), "imgforge-build\n");
        assert_eq!(content(&out, "out/pwd"), "/src\n");
        assert_eq!(content(&out, "out/uid"), "0\n");
        assert_eq!(content(&out, "out/umask"), "0022\n");
        let env = content(&out, "out/env");
        for want in [
            "FOO=bar baz",
            "HOME=/root",
            "LC_ALL=C.UTF-8",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "SOURCE_DATE_EPOCH=1700000000",
            "TZ=UTC",
        ] {
            assert!(
                env.lines().any(|l| l == want),
                "{want} missing from env:\n{env}"
            );
        }
        // Only those, plus what the shell itself sets.
        for line in env.lines() {
            let k = line.split('=').next().unwrap();
            assert!(
                [
                    "FOO",
                    "HOME",
                    "LC_ALL",
                    "PATH",
                    "SOURCE_DATE_EPOCH",
                    "TZ",
                    "PWD",
                    "SHLVL",
                    "_"
                ]
                .contains(&k),
                "unexpected variable in the sandbox: {line}"
            );
        }
        let netdev = content(&out, "out/netdev");
        let ifaces: Vec<&str> = netdev
            .lines()
            .skip(2)
            .map(|l| l.split(':').next().unwrap().trim())
            .collect();
        assert_eq!(ifaces, ["lo"], "{netdev}");

        // [[copy]] rules -> layer entries.
        let copies = vec![
            Copy {
                from: "/out/hello".into(),
                to: "/usr/local/bin/hello".into(),
                mode: Some(0o755),
                owner: Owner {
                    uid: 1000,
                    gid: 1001,
                },
            },
            Copy {
                from: "/out/lib".into(),
                to: "/usr/lib/app/".into(),
                mode: None,
                owner: Owner::default(),
            },
            Copy {
                from: "/out/link".into(),
                to: "/usr/local/bin/".into(),
                mode: None,
                owner: Owner::default(),
            },
            Copy {
                from: "/out/lib/*.so".into(),
                to: "/opt/so/".into(),
                mode: Some(0o600),
                owner: Owner::default(),
            },
        ];
        let entries = sandbox::artifact_entries(&out, &copies, SDE).unwrap();
        let by: BTreeMap<&str, &Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let keys: Vec<&str> = by.keys().copied().collect();
        assert_eq!(
            keys,
            [
                "opt/so/a.so",
                "usr/lib/app",
                "usr/lib/app/a.so",
                "usr/lib/app/sub",
                "usr/lib/app/sub/b.so",
                "usr/local/bin/hello",
                "usr/local/bin/link"
            ]
        );
        let h = by["usr/local/bin/hello"];
        assert_eq!(
            (h.kind.clone(), h.mode, h.uid, h.gid, h.mtime, h.size),
            (Kind::File, 0o755, 1000, 1001, SDE, 6)
        );
        assert!(matches!(&h.content, Content::Path(p) if p == hello.file.as_ref().unwrap()));
        assert_eq!(h.sha256.map(hex::encode), hello.sha256.clone());
        assert_eq!(
            (by["usr/lib/app/a.so"].mode, by["usr/lib/app/a.so"].uid),
            (0o644, 0)
        );
        assert_eq!(by["usr/lib/app/a.so"].uname, "root");
        assert_eq!(by["usr/lib/app/sub"].kind, Kind::Dir);
        assert_eq!(by["usr/local/bin/link"].kind, Kind::Symlink("hello".into()));
        assert_eq!(by["opt/so/a.so"].mode, 0o600);
        assert!(entries.iter().all(|e| e.mtime == SDE));

        // The entries make a valid layer.
        let norm = layer::normalize(entries, &BTreeSet::new(), SDE).unwrap();
        let blobs = s.tmp.path().join("out-blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        layer::write_layer(
            &norm,
            &WriteOptions {
                blobs_dir: blobs,
                compression: Compression::Gzip(1),
            },
        )
        .unwrap();

        // A copy whose `from` matches nothing names it.
        let err = sandbox::artifact_entries(
            &out,
            &[Copy {
                from: "/out/nope".into(),
                to: "/x".into(),
                mode: None,
                owner: Owner::default(),
            }],
            SDE,
        )
        .unwrap_err();
        assert!(matches!(err, SandboxError::CopyNoMatch { .. }), "{err}");
        assert!(err.to_string().contains("/out/nope"), "{err}");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_index, has_runc]
    "needs ../shared/debian, ../shared/debian-index, `runc` on PATH";
    fn sandbox_failing_step_names_recipe_step_code_and_tail() {
        let Some(s) = setup() else { return };
        let spec = s.spec(
            "failing-app",
            vec![
                sh("echo first step ok > /out/first"),
                // runc relays stdout and stderr through separate pipes, so their
                // relative order in the log is only approximate: pause before
                // the stderr line.
                sh("for i in $(seq 1 40); do echo output-line-$i; done; sleep 0.3; echo the-last-words >&2; exit 7"),
                sh("echo never > /out/never"),
            ],
            &["/out/first"],
        );
        let err = sandbox::run_stage(&spec, &s.opts(true)).unwrap_err();
        s.assert_clean();
        let msg = err.to_string();
        match &err {
            SandboxError::StepFailed {
                recipe,
                step,
                code,
                tail,
                log,
                ..
            } => {
                assert_eq!(recipe, "failing-app");
                assert_eq!(*step, 2);
                assert_eq!(*code, 7);
                assert!(
                    tail.contains("output-line-40") && tail.contains("the-last-words"),
                    "{tail}"
                );
                assert!(
                    !tail.contains("output-line-5\n"),
                    "only the last lines: {tail}"
                );
                let full = std::fs::read_to_string(log).expect("the full log is kept");
                assert!(
                    full.contains("output-line-1\n") && full.contains("the-last-words"),
                    "{full}"
                );
            }
            other => panic!("expected StepFailed, got {other:?}"),
        }
        assert!(msg.contains("failing-app"), "{msg}");
        assert!(msg.contains("build step 2"), "{msg}");
        assert!(msg.contains("echo output-line-$i"), "step text: {msg}");
        assert!(msg.contains("exit code 7"), "{msg}");
        assert!(msg.contains("the-last-words"), "{msg}");
        // Nothing was cached.
        assert!(
            std::fs::read_dir(s.tmp.path().join("cache"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
        );

        // A missing executable: the runtime's own error is reported the same way.
        let spec = s.spec(
            "failing-app",
            vec![Step::Exec(vec!["/no/such/tool".into()])],
            &["/out/x"],
        );
        let err = sandbox::run_stage(&spec, &s.opts(false)).unwrap_err();
        assert!(
            matches!(err, SandboxError::StepFailed { step: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("/no/such/tool"), "{err}");
    }
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_has_no_network_to_the_host() {
        let Some(s) = setup() else { return };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let spec = s.spec(
            "net-probe",
            vec![sh(&format!(
                "if echo ping | {BUSYBOX} nc -w 3 127.0.0.1 {port}; then echo CONNECTED; exit 0; \
                 else echo REFUSED; exit 3; fi"
            ))],
            &["/out/x"],
        );
        let err = sandbox::run_stage(&spec, &s.opts(false)).unwrap_err();
        match &err {
            SandboxError::StepFailed { code, tail, .. } => {
                assert_eq!(*code, 3, "{err}");
                assert!(
                    tail.contains("REFUSED") && !tail.contains("CONNECTED"),
                    "{tail}"
                );
            }
            other => panic!("expected StepFailed, got {other:?}"),
        }
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the host listener saw a connection from the sandbox: {other:?}"),
        }
    }
}

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("imgforge-{tag}-{}-{n}", std::process::id())
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_hostile_context_cannot_escape() {
        let Some(s) = setup() else { return };
        let ctx = s.tmp.path().join("context");
        std::fs::create_dir_all(ctx.join("dir")).unwrap();
        std::fs::write(ctx.join("hello.txt"), "from the context\n").unwrap();
        std::fs::write(ctx.join("dir/inner.txt"), "inner\n").unwrap();
        std::os::unix::fs::symlink("/", ctx.join("escape")).unwrap();
        let name = unique("escape");
        assert!(!Path::new("/tmp").join(&name).exists());
        let mut spec = s.spec(
            "hostile-context",
            vec![sh(&format!(
                "echo pwned > /src/escape/tmp/{name}; echo pwned > /src/escape/{name}; \
                 cat /src/hello.txt /src/dir/inner.txt > /out/copied; \
                 test -L /src/escape && echo islink > /out/islink; \
                 if touch /src/new 2>/dev/null; then echo writable; else echo readonly; fi > /out/src-mode; \
                 ln -s / /out/evil"
            ))],
            &["/out/copied", "/out/islink", "/out/src-mode", "/out/evil"],
        );
        spec.context = Some(ctx.clone());
        let out = sandbox::run_stage(&spec, &s.opts(false)).unwrap();
        assert_eq!(content(&out, "out/copied"), "from the context\ninner\n");
        assert_eq!(content(&out, "out/islink"), "islink\n");
        assert_eq!(content(&out, "out/src-mode"), "readonly\n");
        assert_eq!(artifact(&out, "out/evil").kind, Kind::Symlink("/".into()));
        assert!(
            !Path::new("/tmp").join(&name).exists(),
            "wrote through the context symlink to the host's /tmp"
        );
        assert!(
            !Path::new("/").join(&name).exists(),
            "wrote through the context symlink to the host's /"
        );
        // The context itself is untouched.
        assert!(!ctx.join("new").exists());
        assert_eq!(
            std::fs::read_link(ctx.join("escape")).unwrap(),
            Path::new("/")
        );

        // Artifacts are not resolved through symlinks the build made or copied.
        for bad in ["/out/evil/etc/hostname", "/src/escape/etc/passwd"] {
            let mut spec = s.spec("hostile-context", vec![sh("ln -s / /out/evil")], &[bad]);
            spec.context = Some(ctx.clone());
            let err = sandbox::run_stage(&spec, &s.opts(false)).unwrap_err();
            assert!(
                matches!(err, SandboxError::BadArtifact { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("symlink"), "{err}");
        }
        s.assert_clean();
    }
}

/// Write a gzip layer blob from raw tar entries; returns its path.
fn hostile_blob(dir: &Path, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(sha_hex(&bytes));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(SDE);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// A header whose name is written raw (the tar crate refuses `..`).
fn raw_header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = header(kind, size, 0o644);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    h
}

#[test]
fn sandbox_hostile_layers_are_refused() {
    // Needs no runtime: unpacking fails before any step runs.
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let blobs = tmp.path().join("blobs");
    let outside_s = outside.to_str().unwrap().to_string();

    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "evil/pwned",
            hostile_blob(&blobs, |b| {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                b.append_link(&mut h, "evil", &outside_s).unwrap();
                let mut h = header(tar::EntryType::Regular, 6, 0o644);
                b.append_data(&mut h, "evil/pwned", &b"pwned\n"[..])
                    .unwrap();
            }),
        ),
        (
            "evil2/sub/",
            hostile_blob(&blobs, |b| {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                b.append_link(&mut h, "evil2", &outside_s).unwrap();
                let mut h = header(tar::EntryType::Directory, 0, 0o755);
                b.append_data(&mut h, "evil2/sub/", std::io::empty())
                    .unwrap();
            }),
        ),
        (
            "../escaped",
            hostile_blob(&blobs, |b| {
                let h = raw_header("../escaped", tar::EntryType::Regular, 6);
                b.append(&h, &b"pwned\n"[..]).unwrap();
            }),
        ),
        (
            "hl",
            hostile_blob(&blobs, |b| {
                let mut h = header(tar::EntryType::Link, 0, 0o644);
                h.set_link_name("x").unwrap();
                let raw = b"../../../etc/passwd";
                h.as_gnu_mut().unwrap().linkname[..raw.len()].copy_from_slice(raw);
                h.set_cksum();
                b.append_data(&mut h, "hl", std::io::empty()).unwrap();
            }),
        ),
        (
            "dev/sda",
            hostile_blob(&blobs, |b| {
                let mut h = header(tar::EntryType::Block, 0, 0o600);
                b.append_data(&mut h, "dev/sda", std::io::empty()).unwrap();
            }),
        ),
    ];
    for (entry, blob) in cases {
        let spec = StageSpec {
            recipe: "hostile-layer".into(),
            layers: vec![blob.clone()],
            context: None,
            steps: vec![Step::Shell("true".into())],
            env: BTreeMap::new(),
            artifacts: vec!["/out/x".into()],
            source_date_epoch: SDE,
            limits: Default::default(),
        };
        let opts = SandboxOptions {
            cache_dir: None,
            work_dir: tmp.path().join("work"),
            runtime: Some(PathBuf::from("/bin/true")),
            trees: None,
            logs: None,
            executor: Default::default(),
        };
        let err = sandbox::run_stage(&spec, &opts).unwrap_err();
        match &err {
            SandboxError::Unpack {
                recipe,
                layer,
                entry: e,
                ..
            } => {
                assert_eq!(recipe, "hostile-layer");
                assert_eq!(layer, &blob);
                assert_eq!(e, entry, "{err}");
            }
            other => panic!("{entry}: expected Unpack, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("help:"), "{msg}");
        let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
        assert!(left.is_empty(), "{entry}: wrote outside the root: {left:?}");
        assert!(!tmp.path().join("work").join("escaped").exists());
        assert!(!tmp.path().join("escaped").exists());
    }
    // No build root is left behind.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("work"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_missing_artifact_is_named() {
        let Some(s) = setup() else { return };
        for missing in ["/out/absent", "/out/*.so", "/nodir/file"] {
            let spec = s.spec(
                "missing-art",
                vec![sh("echo x > /out/present")],
                &["/out/present", missing],
            );
            let err = sandbox::run_stage(&spec, &s.opts(true)).unwrap_err();
            assert!(
                matches!(&err, SandboxError::MissingArtifact { artifact, recipe } if artifact == missing && recipe == "missing-art"),
                "{err}"
            );
            assert!(err.to_string().contains(missing), "{err}");
        }
        s.assert_clean();
    }
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_cache_reuses_a_complete_result() {
        let Some(s) = setup() else { return };
        let spec = s.spec(
            "cached-app",
            vec![sh(
                "cat /proc/sys/kernel/random/uuid > /out/stamp; date +%s >> /out/stamp",
            )],
            &["/out/stamp"],
        );
        let first = sandbox::run_stage(&spec, &s.opts(true)).unwrap();
        assert!(!first.cached);
        let second = sandbox::run_stage(&spec, &s.opts(true)).unwrap();
        assert!(second.cached, "the second run must reuse the cache");
        assert_eq!(second.cache_key, first.cache_key);
        assert_eq!(
            second.artifacts, first.artifacts,
            "identical artifacts (same random stamp)"
        );
        assert!(
            second.artifacts[0]
                .file
                .as_ref()
                .unwrap()
                .starts_with(s.tmp.path().join("cache"))
        );

        // A different input is a different key and runs again.
        let mut changed = spec.clone();
        changed.env.insert("X".into(), "1".into());
        let third = sandbox::run_stage(&changed, &s.opts(true)).unwrap();
        assert!(!third.cached);
        assert_ne!(third.cache_key, first.cache_key);
        assert_ne!(third.artifacts[0].sha256, first.artifacts[0].sha256);

        // A corrupted cache entry is not trusted: the stage runs again.
        std::fs::write(first.artifacts[0].file.as_ref().unwrap(), "tampered").unwrap();
        let fourth = sandbox::run_stage(&spec, &s.opts(true)).unwrap();
        assert!(!fourth.cached);
        assert_eq!(fourth.cache_key, first.cache_key);
        assert_ne!(fourth.artifacts[0].sha256, first.artifacts[0].sha256);
        let fifth = sandbox::run_stage(&spec, &s.opts(true)).unwrap();
        assert!(fifth.cached);
        assert_eq!(fifth.artifacts, fourth.artifacts);
        s.assert_clean();
    }
}

#[test]
fn sandbox_cache_key_tracks_inputs_not_host_noise() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("d")).unwrap();
    std::fs::write(ctx.join("d/f.c"), "int main(){}\n").unwrap();
    std::os::unix::fs::symlink("d/f.c", ctx.join("link")).unwrap();
    let spec = StageSpec {
        recipe: "k".into(),
        layers: vec![PathBuf::from(format!("/nonexistent/{}", "a".repeat(64)))],
        context: Some(ctx.clone()),
        steps: vec![Step::Shell("make".into())],
        env: BTreeMap::new(),
        artifacts: vec!["/out/x".into()],
        source_date_epoch: SDE,
        limits: Default::default(),
    };
    let key = sandbox::cache_key(&spec).unwrap();
    assert_eq!(key, sandbox::cache_key(&spec).unwrap());

    // Host noise: mtimes and group/other write bits (umask) do not count.
    let f = ctx.join("d/f.c");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
    std::fs::File::options()
        .append(true)
        .open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(key, sandbox::cache_key(&spec).unwrap());

    let mut changes: Vec<(&str, String)> = Vec::new();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    changes.push(("exec bit", sandbox::cache_key(&spec).unwrap()));
    std::fs::write(&f, "int main(){return 1;}\n").unwrap();
    changes.push(("content", sandbox::cache_key(&spec).unwrap()));
    std::fs::remove_file(ctx.join("link")).unwrap();
    std::os::unix::fs::symlink("d", ctx.join("link")).unwrap();
    changes.push(("symlink target", sandbox::cache_key(&spec).unwrap()));
    let mut s2 = spec.clone();
    s2.steps.push(Step::Shell("true".into()));
    changes.push(("steps", sandbox::cache_key(&s2).unwrap()));
    let mut s3 = spec.clone();
    s3.layers
        .push(PathBuf::from(format!("/nonexistent/{}", "b".repeat(64))));
    changes.push(("layers", sandbox::cache_key(&s3).unwrap()));
    let mut s4 = spec.clone();
    s4.source_date_epoch += 1;
    changes.push(("SDE", sandbox::cache_key(&s4).unwrap()));
    let mut s5 = spec.clone();
    s5.artifacts.push("/out/y".into());
    changes.push(("artifacts", sandbox::cache_key(&s5).unwrap()));
    let mut all = BTreeSet::from([key]);
    for (what, k) in changes {
        assert!(all.insert(k), "changing the {what} did not change the key");
    }
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_step_over_its_time_limit_is_killed_and_named() {
        let Some(s) = setup() else { return };
        let mut spec = s.spec(
            "slow-app",
            vec![sh("echo started; sleep 60; echo never > /out/x")],
            &["/out/x"],
        );
        spec.limits.timeout = std::time::Duration::from_secs(2);
        let t = std::time::Instant::now();
        let err = sandbox::run_stage(&spec, &s.opts(false)).unwrap_err();
        assert!(
            t.elapsed().as_secs() < 30,
            "not killed in time: {:?}",
            t.elapsed()
        );
        s.assert_clean();
        let msg = err.to_string();
        assert!(
            matches!(err, SandboxError::StepLimit { step: 1, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("slow-app") && msg.contains("time limit of 2s"),
            "{msg}"
        );
        assert!(msg.contains("timeout"), "the hint names the field: {msg}");
    }
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_step_over_its_memory_limit_is_killed_and_named() {
        let Some(s) = setup() else { return };
        let mut spec = s.spec(
            "hungry-app",
            // dd allocates its block size: 512 MiB against a 64 MiB limit.
            vec![sh(
                "dd if=/dev/zero of=/dev/null bs=512M count=1 && touch /out/x",
            )],
            &["/out/x"],
        );
        spec.limits.memory_bytes = 64 << 20;
        let err = sandbox::run_stage(&spec, &s.opts(false)).unwrap_err();
        s.assert_clean();
        let msg = err.to_string();
        assert!(
            matches!(err, SandboxError::StepLimit { .. }) && msg.contains("memory limit of 64 MiB"),
            "{msg}"
        );
    }
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    fn sandbox_seccomp_denies_namespaces_and_the_log_outlives_the_build() {
        let Some(s) = setup() else { return };
        let spec = s.spec(
            "seccomp-app",
            // unshare(CLONE_NEWUSER) needs no capability: only seccomp stops it.
            vec![sh("unshare -U true && echo escaped; exit 3")],
            &["/out/x"],
        );
        let mut opts = s.opts(false);
        let logs = s.tmp.path().join("kept-logs");
        opts.logs = Some(logs.clone());
        let err = sandbox::run_stage(&spec, &opts).unwrap_err();
        let SandboxError::StepFailed {
            code, log, tail, ..
        } = &err
        else {
            panic!("expected StepFailed, got {err}");
        };
        assert_eq!(*code, 3, "{err}");
        assert!(!tail.contains("escaped"), "{tail}");
        assert!(tail.contains("Operation not permitted"), "{tail}");
        // The work dir (the build's scratch) goes away; the kept log stays.
        std::fs::remove_dir_all(s.tmp.path().join("work")).unwrap();
        assert!(log.starts_with(&logs), "{}", log.display());
        let full = std::fs::read_to_string(log).expect("the log named by the error exists");
        assert!(full.contains("Operation not permitted"), "{full}");
    }
}

needs! { [has_fixture_debian, has_runc, has_newuidmap] "needs ../shared/debian, `runc` on PATH, newuidmap";
    fn sandbox_build_stage_runs_rootless_as_an_unprivileged_user() {
        // `imgforge build` as an unprivileged user (the rootless tests' user,
        // with a subordinate range, when the test runs as root): the sandbox
        // must pick rootless mode by itself, and the step checks from inside
        // that its root is the calling user, mapped through a user namespace
        // (`0 <uid> 1`; a rootful container maps `0 0 4294967295`), and its
        // ids from 1 the user's subordinate range (`1 <start> 65536`).
        if !common::require_tool("runc") || !common::require_tool("newuidmap") {
            return;
        }
        let Some(fixture) = common::fixture() else {
            return;
        };
        let busybox = std::fs::read_dir(fixture.join("pool"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with("busybox-static_"))
            .expect("busybox-static in the fixture pool");
        let version = busybox.split('_').nth(1).unwrap().replace("%3a", ":");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let root = rustix::process::geteuid().is_root();
        let (uid, gid) = crate::rootless::rootless_user();
        // No toolset: nothing here has scripts.
        let base = format!(
            "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
             [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n\
             [packages]\nbusybox-static = \"{version}\"\n\n\
             [configure]\nessential = false\n"
        );
        let check = format!(
            "cat /proc/self/uid_map; busybox awk '$1 == 0 && $2 == {uid} && $3 == 1 {{ ok++ }} $1 == 1 && $3 == 65536 {{ ok++ }} END {{ exit ok != 2 }}' /proc/self/uid_map && busybox id -u > /out/uid"
        );
        let app = format!(
            "[image]\nname = \"app\"\ntag = \"1\"\n\n[build]\npackages = {{ busybox-static = \"{version}\" }}\n\
             steps = [[\"/bin/busybox\", \"sh\", \"-c\", {check:?}]]\nartifacts = [\"/out/uid\"]\n\n\
             [[copy]]\nfrom = \"/out/uid\"\nto = \"/uid\"\n"
        );
        std::fs::create_dir_all(dir.join("base")).unwrap();
        std::fs::create_dir_all(dir.join("recipes")).unwrap();
        std::fs::write(dir.join("base/base.toml"), base).unwrap();
        std::fs::write(dir.join("recipes/app.toml"), app).unwrap();
        let mut cmd = common::imgforge();
        cmd.current_dir(dir)
            .args(["build", "recipes", "--mirror"])
            .arg(&fixture)
            .args(["--out", "out", "--cache", "cache", "--no-apt"]);
        if root {
            common::chown_tree(dir, uid, gid);
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
        }
        let o = common::run(&mut cmd);
        let t = common::text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("Built app build stage"), "{t}");
    }
}
