//! The runtime lint: whether what an image ships can run inside it.
//!
//! For every regular file of the image (all its layers: base, packages,
//! configuration, recipe files, build artifacts, merged bottom first with
//! whiteouts applied), each `#!` interpreter, each ELF interpreter
//! (`PT_INTERP`) and each `DT_NEEDED` library must resolve inside the image
//! (symlinks followed within its root; libraries searched as the dynamic
//! loader does, see [`find`]). `#!/usr/bin/env NAME` also needs `NAME` on
//! the config's `PATH`. What does not resolve is listed in the [`Report`],
//! with the package that ships the file, and the locked packages that
//! would provide what is missing.
//!
//! What the config runs (its entrypoint, or its cmd when there is none)
//! must start: the program found, executable, an ELF file or a `#!`
//! script, with its interpreters and every library it loads (transitively)
//! present. When it cannot, [`check`] fails with
//! [`LintError::CannotStart`], naming the image and what is missing.
//!
//! Two functions: [`scan_layer`] reads one layer tar in one streaming pass
//! into [`LayerFacts`] (which the build plan stores by the layer's digest),
//! and [`check`], the entry point, judges one image from its layers'
//! facts. Nothing is read from the host: the result depends on the layers,
//! the config and the known packages only, and lists are sorted.

pub mod elf;
pub mod find;
pub mod scan;
pub mod tree;

pub use scan::{LayerFacts, scan_layer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many unresolved dependencies a warning shows.
pub const SHOWN: usize = 5;

/// Errors of the lint, naming the image or layer.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error(
        "runtime lint: cannot read layer {layer}: {source}\nhelp: the layer is damaged; build again with --no-cache"
    )]
    Read {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "image {image}: its {field} {program:?} cannot start:\n{}\nhelp: add the package that ships what is missing to the recipe's [packages] (or its [[copy]] artifacts), or change [config] {field}",
        problems.iter().map(|p| format!("    {}", p.describe())).collect::<Vec<_>>().join("\n")
    )]
    CannotStart {
        image: String,
        field: &'static str,
        program: String,
        problems: Vec<Unresolved>,
    },
    #[error(
        "image {image}: cannot list the files of the locked packages: {source}\nhelp: check the package cache (--cache), or build again with --no-cache"
    )]
    Known {
        image: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What a file needs (or, for what the config runs, what is wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeedKind {
    /// Its `#!` interpreter.
    Interpreter,
    /// The program `#!/usr/bin/env NAME` runs, on `PATH`.
    Program,
    /// Its ELF interpreter (`PT_INTERP`).
    ElfInterpreter,
    /// A `DT_NEEDED` library.
    Library,
    /// What the config runs is not in the image.
    Missing,
    /// What the config runs has no exec bit.
    NotExecutable,
    /// What the config runs is neither ELF nor a `#!` script.
    NotRunnable,
}

/// One dependency the image lacks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unresolved {
    /// The package that ships the file, if a package does.
    pub package: Option<String>,
    /// The file (absolute; as written for a program the config names).
    pub path: String,
    pub kind: NeedKind,
    /// The missing interpreter (as written), library (soname) or program.
    pub needs: String,
    /// The layer the file comes from (when no package ships it).
    pub layer: String,
    /// Locked packages of the build that ship what is missing.
    pub providers: Vec<String>,
    /// Where the missing file would have to be (for `providers`).
    #[serde(skip)]
    pub candidates: Vec<String>,
}

impl Unresolved {
    /// `/usr/sbin/foo (package bar) needs /bin/sh, not in the image (dash ships it)`.
    pub fn describe(&self) -> String {
        let from = match &self.package {
            Some(p) => format!("package {p}"),
            None if self.layer.is_empty() => "no package".to_string(),
            None => self.layer.clone(),
        };
        let what = match self.kind {
            NeedKind::Missing => {
                return format!("{} is not in the image{}", self.needs, self.ships());
            }
            NeedKind::NotExecutable => return format!("{} ({from}) is not executable", self.path),
            NeedKind::NotRunnable => {
                return format!(
                    "{} ({from}) is neither an ELF file nor a #! script",
                    self.path
                );
            }
            NeedKind::Program => format!("{} on PATH", self.needs),
            _ => self.needs.clone(),
        };
        format!(
            "{} ({from}) needs {what}, not in the image{}",
            self.path,
            self.ships()
        )
    }

    fn ships(&self) -> String {
        match self.providers.as_slice() {
            [] => String::new(),
            [one] => format!(" ({one} ships it)"),
            many => format!(" ({} ship it)", many.join(" or ")),
        }
    }
}

/// The lint of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// What the config runs, resolved (absolute), if it runs something.
    pub start: Option<String>,
    /// Sorted by package, file, kind and what is missing.
    pub unresolved: Vec<Unresolved>,
    /// Layers with more entries than the lint keeps (see
    /// [`scan::MAX_READ`]): what they hold past that was not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

impl Report {
    /// The warning for `image`: a count and the first few, or `None`.
    pub fn warning(&self, image: &str) -> Option<String> {
        let n = self.unresolved.len();
        if n == 0 && self.incomplete.is_empty() {
            return None;
        }
        let mut lines = vec![format!(
            "{image}: {n} file dependenc{} not in the image (runtime lint):",
            if n == 1 { "y" } else { "ies" }
        )];
        lines.extend(
            self.unresolved
                .iter()
                .take(SHOWN)
                .map(|u| format!("    {}", u.describe())),
        );
        if n > SHOWN {
            lines.push(format!(
                "    ... and {} more (all of them in --metadata-file and --format json)",
                n - SHOWN
            ));
        }
        if !self.incomplete.is_empty() {
            lines.push(format!(
                "    not checked past {} entries: {}",
                scan::MAX_READ,
                self.incomplete.join(", ")
            ));
        }
        Some(lines.join("\n"))
    }
}

/// A layer of the image, with what it is (for files no package ships:
/// `configuration`, `recipe files`, `build artifacts`...).
#[derive(Debug, Clone)]
pub struct LayerView<'a> {
    pub facts: &'a LayerFacts,
    pub label: String,
}

/// What the image's config runs, and the environment it runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Start {
    /// The entrypoint's program, or the cmd's when there is no entrypoint.
    pub program: Option<String>,
    /// `entrypoint` or `cmd`.
    pub field: &'static str,
    /// `PATH` (default: [`find::DEFAULT_PATH`]).
    pub path: Option<String>,
    pub ld_library_path: Option<String>,
    pub workdir: Option<String>,
}

impl Start {
    /// From an image config's fields.
    pub fn new(
        entrypoint: Option<&[String]>,
        cmd: Option<&[String]>,
        env: &BTreeMap<String, String>,
        workdir: Option<&str>,
    ) -> Start {
        let first = |v: Option<&[String]>| v.and_then(|v| v.first()).cloned();
        let (program, field) = match first(entrypoint) {
            Some(p) => (Some(p), "entrypoint"),
            None => (first(cmd), "cmd"),
        };
        Start {
            program,
            field,
            path: env.get("PATH").cloned(),
            ld_library_path: env.get("LD_LIBRARY_PATH").cloned(),
            workdir: workdir.map(str::to_string),
        }
    }
}

/// Which locked packages ship which of the given paths (relative, as
/// package layers name them: merged-/usr): path -> package names. Asked
/// only when something is unresolved.
pub type Known<'a> = &'a (dyn Fn(&BTreeSet<String>) -> Result<Providers, BoxError> + Sync);

/// Path -> the locked packages that ship it.
pub type Providers = BTreeMap<String, BTreeSet<String>>;

/// The error of a [`Known`] lookup.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`check`] needs.
pub struct LintOptions<'a> {
    /// `name:tag`, for messages.
    pub image: &'a str,
    /// Bottom first.
    pub layers: Vec<LayerView<'a>>,
    pub start: Start,
    /// Debian architecture (`amd64`, `arm64`...).
    pub arch: &'a str,
    pub known: Known<'a>,
}

/// Lint one image: its unresolved dependencies, or an error when what its
/// config runs cannot start.
pub fn check(opts: &LintOptions) -> Result<Report, LintError> {
    let facts: Vec<&LayerFacts> = opts.layers.iter().map(|l| l.facts).collect();
    let img = tree::Image::new(&facts);
    let env = find::Env::new(&img, opts);
    let mut unresolved = find::findings(&env);
    let workdir = opts.start.workdir.as_deref().unwrap_or("/");
    let (start, mut problems) = match &opts.start.program {
        Some(p) => find::start(&env, p, workdir),
        None => (None, Vec::new()),
    };
    let wanted: BTreeSet<String> = unresolved
        .iter()
        .chain(&problems)
        .flat_map(|u| u.candidates.iter().cloned())
        .collect();
    if !wanted.is_empty() {
        let known = (opts.known)(&wanted).map_err(|source| LintError::Known {
            image: opts.image.to_string(),
            source,
        })?;
        providers(&mut unresolved, &known);
        providers(&mut problems, &known);
    }
    if !problems.is_empty() {
        problems.sort();
        problems.dedup();
        return Err(LintError::CannotStart {
            image: opts.image.to_string(),
            field: opts.start.field,
            program: opts.start.program.clone().unwrap_or_default(),
            problems,
        });
    }
    unresolved.sort();
    unresolved.dedup();
    let incomplete = opts
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.facts.truncated)
        .map(|(i, l)| format!("layer {i} ({})", l.label))
        .collect();
    Ok(Report {
        start,
        unresolved,
        incomplete,
    })
}

/// Name the known packages that ship where each missing file would be.
fn providers(list: &mut [Unresolved], known: &Providers) {
    for u in list.iter_mut() {
        let names: BTreeSet<&String> = u
            .candidates
            .iter()
            .filter_map(|c| known.get(c))
            .flatten()
            .collect();
        u.providers = names.into_iter().cloned().collect();
    }
}

#[cfg(test)]
mod tests;
