//! Rootless builds: run by a user other than root, the sandbox maps the
//! user's subordinate id range (`/etc/subuid`, `/etc/subgid`, through
//! newuidmap/newgidmap), so maintainer scripts' `chown`s to system groups
//! work (base-files' postinst: `chown root:mail /var/mail`), and the
//! examples build with the digests a root build gives. A user without a
//! range gets an error saying how to add one.
//!
//! Run as root, the tests make their own system users (once; kept for the
//! next run): [`USER`] with a subordinate range, [`NO_RANGE`] without.

use crate::common;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// A system user with a subordinate id range, for rootless builds.
pub(crate) const USER: &str = "imgforge-rootless";
/// A system user without one.
const NO_RANGE: &str = "imgforge-norange";
/// The range given to [`USER`] (as `usermod --add-subuids` takes it).
const RANGE: &str = "620000-685535";

fn id(args: &[&str]) -> u32 {
    let o = common::run(Command::new("id").args(args));
    assert!(o.status.success(), "id {args:?}: {}", common::text(&o));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// The system user `name` (created when missing), with [`RANGE`] as its
/// subordinate range when `range`; its uid and gid.
fn system_user(name: &str, range: bool) -> (u32, u32) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let exists = common::run(Command::new("id").arg(name)).status.success();
    if !exists {
        let o = common::run(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]));
        assert!(o.status.success(), "useradd {name}: {}", common::text(&o));
    }
    let listed = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{name}:")))
    };
    if range && !(listed("/etc/subuid") && listed("/etc/subgid")) {
        let o = common::run(Command::new("usermod").args([
            "--add-subuids",
            RANGE,
            "--add-subgids",
            RANGE,
            name,
        ]));
        assert!(o.status.success(), "usermod {name}: {}", common::text(&o));
    }
    assert!(
        range || !listed("/etc/subuid"),
        "{name} must have no subordinate uid range for this test"
    );
    (id(&["-u", name]), id(&["-g", name]))
}

/// The user a rootless test runs imgforge as: [`USER`] when the tests run
/// as root, else the caller (who needs a range, as any rootless user does).
pub(crate) fn rootless_user() -> (u32, u32) {
    if rustix::process::geteuid().is_root() {
        system_user(USER, true)
    } else {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    }
}

/// A copy of the examples (`keep` of the recipes) with its own mirror
/// (links into the shared one), owned by `owner` when given.
fn examples_tree(mirror: &Path, keep: &[&str], owner: Option<(u32, u32)>) -> tempfile::TempDir {
    let tmp = common::copy_examples();
    for r in ["nginx", "hello", "python"] {
        if !keep.contains(&r) {
            std::fs::remove_file(tmp.path().join(format!("recipes/{r}.toml"))).unwrap();
        }
    }
    let own = tmp.path().join("mirror");
    std::fs::create_dir_all(own.join("pool")).unwrap();
    std::fs::copy(mirror.join("Packages"), own.join("Packages")).unwrap();
    for e in std::fs::read_dir(mirror.join("pool")).unwrap() {
        let p = e.unwrap().path();
        let target = std::fs::read_link(&p).unwrap_or(p.clone());
        std::os::unix::fs::symlink(target, own.join("pool").join(p.file_name().unwrap())).unwrap();
    }
    if let Some((uid, gid)) = owner {
        common::chown_tree(tmp.path(), uid, gid);
    }
    tmp
}

/// `imgforge build` of the tree in `dir`, as `user` when given.
fn build(dir: &Path, user: Option<(u32, u32)>) -> std::process::Output {
    let mut cmd = common::imgforge();
    cmd.current_dir(dir)
        .args(["build", "recipes", "--no-apt", "--mirror", "mirror"])
        .args(["--out", "out", "--cache", "cache", "--scratch", "."]);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid).env("HOME", dir);
    }
    common::run(&mut cmd)
}

/// `index.json` and every blob of an OCI layout, by path.
fn layout(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    m.insert(
        "index.json".to_string(),
        std::fs::read(out.join("index.json")).unwrap(),
    );
    for e in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = format!("blobs/sha256/{}", e.file_name().to_string_lossy());
        m.insert(name, std::fs::read(e.path()).unwrap());
    }
    m
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_newuidmap, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, newuidmap, root (to make the test's user)";
    /// The examples (the base, hello, nginx, python) built by a user with a
    /// subordinate range (the base's configure step: base-files' postinst
    /// chowns /var/mail to group mail; nginx's adds www-data's files; hello's
    /// build stage) give the bytes a root build gives: the index and every
    /// blob.
    fn examples_built_rootless_give_the_root_build_s_digests() {
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") || !common::require_tool("newuidmap") {
            return;
        }
        let user = rootless_user();
        let keep = ["hello", "nginx", "python"];
        let as_root = examples_tree(&mirror, &keep, None);
        let as_user = examples_tree(&mirror, &keep, Some(user));
        let o = build(as_root.path(), None);
        assert!(o.status.success(), "root build: {}", common::text(&o));
        let o = build(as_user.path(), Some(user));
        let t = common::text(&o);
        assert!(o.status.success(), "rootless build: {t}");
        assert!(t.contains("Configured base"), "{t}");
        let (a, b) = (
            layout(&as_root.path().join("out")),
            layout(&as_user.path().join("out")),
        );
        let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b), "the same blobs");
        for (k, v) in &a {
            assert!(&b[k] == v, "{k} differs");
        }
        // The chown to the mail group took: a layer holds /var/mail with
        // gid 8, as the user built it.
        let mail = b.keys().filter(|k| k.starts_with("blobs/")).any(|k| {
            let blob = as_user.path().join("out").join(k);
            let Ok(r) = imgforge::layer::open_blob(&blob) else {
                return false;
            };
            let mut ar = tar::Archive::new(r);
            let Ok(entries) = ar.entries() else {
                return false;
            };
            entries.map_while(Result::ok).any(|e| {
                let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                path.trim_start_matches("./").trim_end_matches('/') == "var/mail"
                    && e.header().gid().ok() == Some(8)
            })
        });
        assert!(mail, "no layer has var/mail/ with gid 8 (mail)");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_newuidmap, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, newuidmap, root (to make the test's user)";
    /// A user without a subordinate range: the first sandbox (the base's
    /// configure step) fails, naming /etc/subuid and the command to add one.
    fn a_user_without_a_subordinate_range_is_told_how_to_add_one() {
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        let user = system_user(NO_RANGE, false);
        let tree = examples_tree(&mirror, &[], Some(user));
        let o = build(tree.path(), Some(user));
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains(&format!("running as {NO_RANGE} (uid {}), not root, and /etc/subuid gives {NO_RANGE} no subordinate id range", user.0)),
            "{t}"
        );
        assert!(
            t.contains(&format!("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {NO_RANGE}")),
            "{t}"
        );
        assert!(!tree.path().join("out").exists(), "{t}");
    }
}
