//! Images for another architecture than the host's: the examples built for
//! arm64 on an amd64 machine, maintainer scripts and build stages under
//! qemu-user (binfmt_misc), and the clear error when emulation is missing.

use crate::common::{copy_dir, imgforge, root, run, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's examples (base and recipes) copied into `dir`, for
/// `arch`, each image renamed under `prefix/` (the test's images never
/// meet a user's, nor the amd64 tests' in docker).
fn examples_for(dir: &Path, arch: &str, prefix: &str) -> PathBuf {
    copy_dir(&root().join("base"), &dir.join("base"));
    copy_dir(&root().join("recipes"), &dir.join("recipes"));
    let base = dir.join("base/base.toml");
    let t = std::fs::read_to_string(&base).unwrap();
    assert!(t.contains("\narch = \"amd64\"\n"), "{t}");
    let t = t.replace("\narch = \"amd64\"\n", &format!("\narch = \"{arch}\"\n"));
    std::fs::write(&base, t).unwrap();
    for f in [
        "base/base.toml",
        "recipes/hello.toml",
        "recipes/nginx.toml",
        "recipes/python.toml",
    ] {
        let p = dir.join(f);
        let t = std::fs::read_to_string(&p).unwrap();
        let t = t.replacen("\nname = \"", &format!("\nname = \"{prefix}/"), 1);
        std::fs::write(&p, t).unwrap();
    }
    dir.join("recipes")
}

/// `name:tag -> platform` of every image in an OCI layout's index, with the
/// config's architecture and variant.
fn platforms(out: &Path) -> Vec<(String, Value, String, Option<String>)> {
    let read =
        |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob = |d: &Value| out.join("blobs/sha256").join(&d.as_str().unwrap()[7..]);
    let index = read(out.join("index.json"));
    let mut v = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let manifest = read(blob(&m["digest"]));
        let config = read(blob(&manifest["config"]["digest"]));
        v.push((
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string(),
            m["platform"].clone(),
            config["architecture"].as_str().unwrap().to_string(),
            config["variant"].as_str().map(str::to_string),
        ));
    }
    v
}

/// Without emulation, an arm64 build stops before anything is fetched or
/// run, and names what to install and enable. The handlers are read from a
/// fake binfmt_misc directory (`IMGFORGE_BINFMT_DIR`, for tests).
#[test]
fn multiarch_missing_binfmt_handler_is_a_clear_error() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("this test needs an x86_64 host (arm64 is foreign there)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipes = examples_for(tmp.path(), "arm64", "imgforge-arm64");
    let fake = tmp.path().join("binfmt_misc");
    std::fs::create_dir_all(&fake).unwrap();
    let build = |fake: &Path| {
        run(imgforge()
            .args(["build", "--out"])
            .arg(tmp.path().join("out"))
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .arg(&recipes)
            .env("IMGFORGE_BINFMT_DIR", fake))
    };
    let o = build(&fake);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("binfmt_misc is not mounted"), "{t}");
    assert!(
        t.contains("mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"),
        "{t}"
    );
    std::fs::write(fake.join("status"), "enabled\n").unwrap();
    let t = text(&build(&fake));
    assert!(t.contains("no binfmt_misc handler qemu-aarch64"), "{t}");
    assert!(
        t.contains("help: `apt-get install qemu-user-static`"),
        "{t}"
    );
    let handler = |state: &str, flags: &str| {
        let body = format!(
            "{state}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n"
        );
        std::fs::write(fake.join("qemu-aarch64"), body).unwrap();
    };
    handler("disabled", "PF");
    let t = text(&build(&fake));
    assert!(t.contains("update-binfmts --enable qemu-aarch64"), "{t}");
    handler("enabled", "P");
    let t = text(&build(&fake));
    assert!(t.contains("lacks the F (fix-binary) flag"), "{t}");
    assert!(!tmp.path().join("out").exists(), "nothing is written");
}

/// Build the tree into `out` with a fresh cache `cache`, with a bundle.
fn build_into(tree: &Path, out: &str, cache: &str) -> String {
    let o = run(imgforge()
        .current_dir(tree)
        .args(["build", "recipes", "--out", out, "--cache", cache])
        .args(["--bundle", &format!("{out}.tar")]));
    let t = text(&o);
    assert!(o.status.success(), "build:\n{t}");
    t
}

needs! { [has_archive, has_binfmt_aarch64, has_docker, has_runc, has_root]
    "needs the archive of the host's apt configuration, qemu-aarch64, docker, `runc` on PATH, root";
    /// The examples pinned to the archive's current arm64 versions and built
    /// for arm64 under emulation: every config says arm64/v8, hello's build
    /// stage made an aarch64 program, python prints 42 under
    /// `docker run --platform linux/arm64`, and a second build from an empty
    /// cache is the same bytes.
    fn multiarch_arm64_examples_build_and_run_emulated() {
        let tmp = tempfile::tempdir().unwrap();
        let seed = tmp.path().join("seed");
        examples_for(&seed, "arm64", "imgforge-arm64");
        let tree = tmp.path().join("tree");
        let o = run(imgforge()
            .current_dir(&seed)
            .args(["-q", "update", "recipes", "--into"])
            .arg(&tree)
            .arg("--cache")
            .arg(tmp.path().join("cache0")));
        assert!(o.status.success(), "update:\n{}", text(&o));
        let lock = std::fs::read_to_string(tree.join("recipes/imgforge.lock")).unwrap();
        assert!(lock.contains("\narch = \"arm64\"\n"), "{lock}");
        assert!(!lock.contains("architecture = \"amd64\""), "{lock}");
        // `platforms = ["linux/arm64"]` is the same tree: the lock stays.
        let base = tree.join("base/base.toml");
        let text_arch = std::fs::read_to_string(&base).unwrap();
        let text_platforms = text_arch.replace("\narch = \"arm64\"\n", "\nplatforms = [\"linux/arm64\"]\n");
        std::fs::write(&base, &text_platforms).unwrap();
        let o = run(imgforge()
            .current_dir(&tree)
            .args(["-q", "lock", "recipes", "--locked", "--cache"])
            .arg(tmp.path().join("cache0")));
        assert!(o.status.success(), "lock --locked with platforms:\n{}", text(&o));
        std::fs::write(&base, text_arch).unwrap();
        let t = build_into(&tree, "out1", "cache1");
        assert!(t.contains("Image imgforge-arm64/python:3.11.2"), "{t}");
        let images = platforms(&tree.join("out1"));
        assert_eq!(images.len(), 4, "{images:?}");
        for (r, platform, arch, variant) in &images {
            assert_eq!(platform["architecture"], "arm64", "{r}");
            assert_eq!(platform["variant"], "v8", "{r}");
            assert_eq!((arch.as_str(), variant.as_deref()), ("arm64", Some("v8")), "{r}");
        }
        run_python(&tree.join("out1.tar"));
        build_into(&tree, "out2", "cache2");
        for f in ["out1/index.json", "out1.tar"] {
            let g = f.replace("out1", "out2");
            assert!(
                std::fs::read(tree.join(f)).unwrap() == std::fs::read(tree.join(&g)).unwrap(),
                "{f} and {g} differ"
            );
        }
    }
}

/// Load the bundle into docker and run the python image for arm64.
fn run_python(bundle: &Path) {
    let refs = [
        "imgforge-arm64/base:bookworm-12.15",
        "imgforge-arm64/hello:1.0.0",
        "imgforge-arm64/nginx:1.22.1",
        "imgforge-arm64/python:3.11.2",
    ];
    struct Cleanup<'a>(&'a [&'a str]);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rmi", "-f"])
                .args(self.0)
                .output();
        }
    }
    let _cleanup = Cleanup(&refs);
    let o = run(Command::new("docker").args(["load", "-i"]).arg(bundle));
    assert!(o.status.success(), "docker load: {}", text(&o));
    let python = refs[3];
    let o = run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Architecture}}",
        python,
    ]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "arm64",
        "{}",
        text(&o)
    );
    let o = run(Command::new("docker").args([
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        python,
        "-c",
        "print(42)",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "42");
    let o = run(Command::new("docker").args([
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "--entrypoint",
        "/usr/bin/python3.11",
        python,
        "-c",
        "import platform; print(platform.machine())",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "aarch64",
        "{}",
        text(&o)
    );
    let o = run(Command::new("docker").args(["run", "--rm", "--platform", "linux/arm64", refs[1]]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "Hello from imgforge!",
        "{}",
        text(&o)
    );
}

/// `platforms` names one OCI platform for now: two, or one that `arch`
/// contradicts, is an error at the line, with what to write instead.
#[test]
fn multiarch_platforms_lists_one() {
    let tmp = tempfile::tempdir().unwrap();
    let recipes = examples_for(tmp.path(), "amd64", "imgforge-amd64");
    let base = tmp.path().join("base/base.toml");
    let text_arch = std::fs::read_to_string(&base).unwrap();
    let check = |replacement: &str| {
        let t = text_arch.replace("\narch = \"amd64\"\n", replacement);
        std::fs::write(&base, t).unwrap();
        let o = run(imgforge().args(["check", "--no-apt"]).arg(&recipes));
        (o.status.success(), text(&o))
    };
    let (ok, t) = check("\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n");
    assert!(
        !ok && t.contains("platforms: 2 listed; one tree builds one platform for now"),
        "{t}"
    );
    assert!(t.contains("help: list exactly one"), "{t}");
    let (ok, t) = check("\nplatforms = [\"linux/arm64\"]\narch = \"amd64\"\n");
    assert!(!ok && t.contains("is arm64, but arch = \"amd64\""), "{t}");
    let (ok, t) = check("\nplatforms = [\"linux/sparc\"]\n");
    assert!(!ok && t.contains("unknown platform \"linux/sparc\""), "{t}");
}
