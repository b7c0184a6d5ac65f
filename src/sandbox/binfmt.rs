//! Running a foreign architecture's programs: qemu-user through binfmt_misc.
//!
//! An image for another architecture than the host's (`arch = "arm64"` on
//! an amd64 machine) runs its maintainer scripts and build stages in the
//! same sandbox as a native one: the kernel hands each foreign ELF to the
//! qemu-user interpreter its binfmt_misc handler names. The sandbox's root
//! has no qemu binary, so the handler must carry the F (fix-binary) flag:
//! the kernel then opens the interpreter when the handler is registered,
//! and uses it in any mount namespace. Debian's `qemu-user-static`
//! registers its handlers so (`flags: PF`).
//!
//! [`check`] looks before anything runs and says what to install or
//! enable. Nothing here reaches an output: it only decides whether a build
//! can run.

use std::path::{Path, PathBuf};

/// Where the kernel shows binfmt_misc handlers.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Tests only: look for handlers in this directory instead of
/// [`BINFMT_DIR`] (a fake one, to see each error).
pub const BINFMT_DIR_ENV: &str = "IMGFORGE_BINFMT_DIR";

/// Why programs of `arch` cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error(
        "{arch} images cannot be configured or built on this {host} machine: binfmt_misc is not mounted ({} has no `status`)\nhelp: mount it (`mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`), then `apt-get install qemu-user-static` (it registers {handler} with the F flag) or `update-binfmts --enable {handler}`",
        dir.display()
    )]
    NotMounted {
        arch: String,
        host: String,
        handler: String,
        dir: PathBuf,
    },
    #[error(
        "{arch} images cannot be configured or built on this {host} machine: no binfmt_misc handler {handler} ({} is missing)\nhelp: `apt-get install qemu-user-static` (it registers {handler} with the F flag); if it is installed, `update-binfmts --enable {handler}`",
        path.display()
    )]
    Missing {
        arch: String,
        host: String,
        handler: String,
        path: PathBuf,
    },
    #[error(
        "{arch} images cannot be configured or built on this {host} machine: the binfmt_misc handler {handler} is disabled ({})\nhelp: `update-binfmts --enable {handler}` (or `echo 1 > {}`)",
        path.display(),
        path.display()
    )]
    Disabled {
        arch: String,
        host: String,
        handler: String,
        path: PathBuf,
    },
    #[error(
        "{arch} images cannot be configured or built on this {host} machine: the binfmt_misc handler {handler} lacks the F (fix-binary) flag (flags: {flags:?}), so the sandbox, which has no qemu inside its root, cannot start {arch} programs\nhelp: use Debian's `qemu-user-static` (its handlers have the F flag): `apt-get install qemu-user-static`, then `update-binfmts --disable {handler} && update-binfmts --enable {handler}`"
    )]
    NoFixBinary {
        arch: String,
        host: String,
        handler: String,
        flags: String,
    },
    #[error("{arch} images cannot be configured or built on this {host} machine: reading {}: {source}\nhelp: check that binfmt_misc is mounted at /proc/sys/fs/binfmt_misc and readable", path.display())]
    Read {
        arch: String,
        host: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{arch} images cannot be configured or built on this {host} machine: imgforge knows no qemu-user handler for {arch}\nhelp: build {arch} images on a {arch} machine, or set `configure = false` in [image] for images without maintainer scripts to run"
    )]
    Unknown { arch: String, host: String },
}

/// The Debian architecture of this machine's programs.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        a => a,
    }
}

/// Whether `arch` programs run on a `host` machine without emulation.
pub fn native(arch: &str, host: &str) -> bool {
    arch == host
        || (host == "amd64" && arch == "i386")
        || (host == "arm64" && matches!(arch, "armhf" | "armel"))
}

/// The binfmt_misc handler Debian's qemu-user-static registers for `arch`.
pub fn handler(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" => "qemu-x86_64",
        "arm64" => "qemu-aarch64",
        "armhf" | "armel" => "qemu-arm",
        "i386" => "qemu-i386",
        "ppc64el" => "qemu-ppc64le",
        "riscv64" => "qemu-riscv64",
        "s390x" => "qemu-s390x",
        "mips64el" => "qemu-mips64el",
        _ => return None,
    })
}

/// Check that `arch` programs can run here: nothing to do when the host
/// runs them natively, else the binfmt_misc handler must be registered,
/// enabled and fix-binary. `dir`: where handlers are shown (`None`:
/// [`BINFMT_DIR_ENV`] if set, else [`BINFMT_DIR`]).
pub fn check(arch: &str, dir: Option<&Path>) -> Result<(), EmulationError> {
    check_on(arch, host_arch(), dir)
}

/// [`check`] for a given host architecture.
pub fn check_on(arch: &str, host: &str, dir: Option<&Path>) -> Result<(), EmulationError> {
    if native(arch, host) {
        return Ok(());
    }
    let (a, h) = (arch.to_string(), host.to_string());
    let Some(name) = handler(arch) else {
        return Err(EmulationError::Unknown { arch: a, host: h });
    };
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::var_os(BINFMT_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(BINFMT_DIR)),
    };
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let handler = name.to_string();
            return Err(match dir.join("status").exists() {
                true => EmulationError::Missing {
                    arch: a,
                    host: h,
                    handler,
                    path,
                },
                false => EmulationError::NotMounted {
                    arch: a,
                    host: h,
                    handler,
                    dir,
                },
            });
        }
        Err(source) => {
            return Err(EmulationError::Read {
                arch: a,
                host: h,
                path,
                source,
            });
        }
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("enabled") {
        let handler = name.to_string();
        return Err(EmulationError::Disabled {
            arch: a,
            host: h,
            handler,
            path,
        });
    }
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| f.trim().to_string())
        .unwrap_or_default();
    if !flags.contains('F') {
        let handler = name.to_string();
        return Err(EmulationError::NoFixBinary {
            arch: a,
            host: h,
            handler,
            flags,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler_file(dir: &Path, text: &str) {
        std::fs::write(dir.join("status"), "enabled\n").unwrap();
        std::fs::write(dir.join("qemu-aarch64"), text).unwrap();
    }

    #[test]
    fn native_needs_nothing() {
        let t = tempfile::tempdir().unwrap();
        check_on("amd64", "amd64", Some(t.path())).unwrap();
        check_on("i386", "amd64", Some(t.path())).unwrap();
    }

    #[test]
    fn each_problem_named() {
        let t = tempfile::tempdir().unwrap();
        let e = check_on("arm64", "amd64", Some(t.path())).unwrap_err();
        assert!(matches!(e, EmulationError::NotMounted { .. }), "{e}");
        std::fs::write(t.path().join("status"), "enabled\n").unwrap();
        let e = check_on("arm64", "amd64", Some(t.path())).unwrap_err();
        assert!(matches!(e, EmulationError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("apt-get install qemu-user-static"));
        handler_file(t.path(), "disabled\ninterpreter /q\nflags: PF\n");
        let e = check_on("arm64", "amd64", Some(t.path())).unwrap_err();
        assert!(
            e.to_string()
                .contains("update-binfmts --enable qemu-aarch64"),
            "{e}"
        );
        handler_file(t.path(), "enabled\ninterpreter /q\nflags: P\n");
        let e = check_on("arm64", "amd64", Some(t.path())).unwrap_err();
        assert!(matches!(e, EmulationError::NoFixBinary { .. }), "{e}");
        handler_file(t.path(), "enabled\ninterpreter /q\nflags: PF\noffset 0\n");
        check_on("arm64", "amd64", Some(t.path())).unwrap();
        assert!(check_on("sparc64", "amd64", Some(t.path())).is_err());
    }
}
