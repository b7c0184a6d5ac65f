//! `imgforge init [DIR]`: start a recipes tree: `DIR/base/base.toml`, the
//! common base pinned to the configured sources' current versions (the
//! host's apt configuration, or `--mirror`), and one example image,
//! `DIR/recipes/example.toml`, every field commented. Refuses to overwrite
//! either. Then `imgforge add PACKAGE --image example` and `build`.

use super::{CommonOptions, Status, source_options};
use crate::pkgindex::Index;
use crate::resolve;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where the sources come from (`recipes` is ignored: `DIR/recipes`).
    pub common: CommonOptions,
    /// The directory to start the tree in.
    pub dir: PathBuf,
    pub quiet: bool,
}

/// Errors of `init`.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{path} already exists; init writes nothing over it\nhelp: init another directory, or remove it first"
    )]
    Exists { path: PathBuf },
}

/// The base's packages, each with why: a distroless-style root.
const BASE: &[(&str, &str)] = &[
    (
        "base-files",
        "/etc/os-release, /etc/debian_version and the FHS layout",
    ),
    (
        "base-passwd",
        "/etc/passwd and /etc/group (root and the system accounts)",
    ),
    ("ca-certificates", "trusted CAs for TLS"),
    ("libc6", "the C library every binary needs"),
    (
        "mawk",
        "base-files pre-depends on the virtual `awk`: Debian's default provider",
    ),
    ("netbase", "/etc/protocols and /etc/services"),
    ("tzdata", "time zones"),
];

/// `imgforge init`: returns the files written.
pub fn init(opts: &InitOptions) -> Result<Vec<PathBuf>> {
    let st = Status { quiet: opts.quiet };
    let base = opts.dir.join("base").join("base.toml");
    let example = opts.dir.join("recipes").join("example.toml");
    for p in [&base, &example] {
        if p.exists() {
            return Err(InitError::Exists { path: p.clone() }.into());
        }
    }
    let index = sources_index(&opts.common)?;
    let text = base_text(&index);
    for (p, t) in [(&base, text.as_str()), (&example, EXAMPLE)] {
        let dir = p.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}\nhelp: check permissions", dir.display()))?;
        super::write_atomic(p, t.as_bytes())?;
        st.say("Created", p.display());
    }
    Ok(vec![base, example])
}

/// The configured sources' index, read through a minimal tree (the base
/// recipe is what names archives, and there is none yet).
fn sources_index(common: &CommonOptions) -> Result<Index> {
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    std::fs::create_dir_all(tmp.path().join("recipes"))?;
    std::fs::create_dir_all(tmp.path().join("base"))?;
    let skeleton = "[image]\nname = \"base\"\ntag = \"1\"\nfrom = \"scratch\"\n";
    std::fs::write(tmp.path().join("base").join("base.toml"), skeleton)?;
    let tree = crate::recipe::load_tree(&crate::recipe::LoadOptions {
        recipes: tmp.path().join("recipes"),
        base: None,
    })?;
    Ok(resolve::load_index(&tree, &source_options(common, true))?)
}

fn base_text(index: &Index) -> String {
    let mut pins = String::new();
    let mut missing = Vec::new();
    for (name, why) in BASE {
        match index.by_name.get(*name).and_then(|l| l.first()) {
            Some(r) => pins.push_str(&format!("# {why}\n{name} = \"{}\"\n", r.version)),
            None => missing.push(*name),
        }
    }
    if !missing.is_empty() {
        pins.push_str(&format!(
            "# Not in the sources when this file was written: {}.\n",
            missing.join(", ")
        ));
    }
    BASE_HEAD.replace("@PINS@", &pins)
}

const BASE_HEAD: &str = r#"# The common base: the root every image in ../recipes/ builds on.
# Every package is pinned to one exact version (`imgforge init` pinned the
# sources' current ones); imgforge resolves the rest of the closure and
# freezes it, with each .deb's sha256, in ../recipes/imgforge.lock.
# `imgforge update` moves the pins later, showing the changelogs.

[image]
name = "base"
# A tag naming a Debian point release (bookworm-12.15) must match the
# base-files pinned below.
tag = "1"
# The base starts from an empty root.
from = "scratch"
# Every timestamp in every layer, config and SBOM (overridden by the
# SOURCE_DATE_EPOCH environment variable). 2025-01-01T00:00:00Z.
source-date-epoch = 1735689600

[source]
# With no --mirror, packages come from the archives of the host's apt
# configuration (signatures checked by imgforge), or from
# [[source.archive]] entries here; `apt = false` never reads the host's.
apt = true
arch = "amd64"

# `imgforge add PACKAGE --image base` pins one more here.
[packages]
@PINS@
[config]
user = "0:0"
workdir = "/"

[config.env]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"#;

const EXAMPLE: &str = r#"# An image on the common base (../base/base.toml): the base's packages,
# these packages and their dependencies, and this configuration.

[image]
# The image's name and tag in the output (example:0.1.0).
name = "example"
tag = "0.1.0"

# Exact versions only; `imgforge add PACKAGE[=VERSION] --image example`
# pins the version the sources have, re-locks and shows what came in.
[packages]

[config]
# What the container runs (OCI config fields: entrypoint, cmd, env,
# workdir, user, expose, labels, stop-signal). The build checks that it
# can start inside the image, e.g. after `add`ing the package shipping it:
# entrypoint = ["/usr/bin/PROGRAM"]

[config.labels]
"org.opencontainers.image.title" = "example"
"#;
