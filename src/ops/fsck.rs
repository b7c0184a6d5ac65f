//! `imgforge fsck [--out DIR] [--cache DIR]`: check, offline, that an output
//! directory and the step store hold what their names say.
//!
//! * Output: every OCI layout in it (the combined one, `images/<name>/`,
//!   `referrers/`): each blob of `blobs/sha256/` hashes to its name, and
//!   every reference is there (`index.json` → manifests (and nested
//!   indexes) → config and layers); each file `imgforge-record.json`
//!   lists (per-image archives, SBOMs, reports) hashes to its recorded
//!   digest.
//! * Step store (`<cache>/plan`): each blob hashes to its name.
//!
//! Files are streamed, and a file linked under several names is hashed
//! once. Nothing is changed: the first problem is reported with a count,
//! and the binary exits 3 (like `verify` finding a difference).

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Options of `fsck`.
#[derive(Debug, Clone)]
pub struct FsckOptions {
    /// The output directory to check, if any.
    pub out: Option<PathBuf>,
    /// The cache whose step store (`plan/`) to check, if any.
    pub cache: Option<PathBuf>,
    pub quiet: bool,
}

/// What `fsck` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Files hashed (each once, however many names link it).
    pub checked: usize,
    /// References followed (manifest, config, layer).
    pub references: usize,
    /// What is wrong, in the order found; each names the object.
    pub problems: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem and the count, for the terminal.
    pub fn render(&self) -> String {
        match self.problems.first() {
            None => format!(
                "fsck: clean: {} file(s) hashed, {} reference(s) present",
                self.checked, self.references
            ),
            Some(first) => format!(
                "error: {first}\n{} problem(s) found ({} file(s) hashed, {} reference(s) followed)\nhelp: a bad output: build again into a fresh --out (a build hashes every stored blob it ships, and remakes one that does not match); a bad step-store blob: delete that file, and the step that made it runs again on the next build",
                self.problems.len(),
                self.checked,
                self.references
            ),
        }
    }
}

/// `imgforge fsck`.
pub fn fsck(opts: &FsckOptions) -> Result<FsckReport> {
    let st = super::Status { quiet: opts.quiet };
    if opts.out.is_none() && opts.cache.is_none() {
        bail!("fsck: nothing to check\nhelp: give --out DIR, --cache DIR or both");
    }
    let mut c = Checker::default();
    if let Some(out) = &opts.out {
        if !out.is_dir() {
            bail!(
                "fsck: {} is not a directory\nhelp: give the --out directory of a build",
                out.display()
            );
        }
        st.say("Checking", out.display());
        c.output(out)?;
    }
    if let Some(cache) = &opts.cache {
        let plan = cache.join("plan");
        if !plan.is_dir() {
            bail!(
                "fsck: {} has no step store ({} is missing)\nhelp: give the --cache directory builds use",
                cache.display(),
                plan.display()
            );
        }
        st.say("Checking", plan.display());
        c.blobs(&plan.join("blobs").join("sha256"), "step store blob", true)?;
    }
    Ok(c.report)
}

#[derive(Default)]
struct Checker {
    report: FsckReport,
    /// Hex sha256 of files hashed, by (device, inode).
    seen: BTreeMap<(u64, u64), String>,
}

impl Checker {
    fn problem(&mut self, p: String) {
        self.report.problems.push(p);
    }

    /// The hex sha256 of `path` (hashed once per inode).
    fn hash(&mut self, path: &Path) -> std::io::Result<String> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        if let Some(h) = self.seen.get(&(m.dev(), m.ino())) {
            return Ok(h.clone());
        }
        let (h, _) = crate::digest::sha256_file(path)?;
        self.report.checked += 1;
        self.seen.insert((m.dev(), m.ino()), h.clone());
        Ok(h)
    }

    /// Check `path` against `hex`; `what` names it in a problem.
    fn file(&mut self, path: &Path, hex: &str, what: &str) {
        match self.hash(path) {
            Ok(h) if h == hex => {}
            Ok(h) => self.problem(format!(
                "{what} {} is corrupt: its bytes hash to sha256:{h}, not sha256:{hex}",
                path.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.problem(format!("{what} {} is missing", path.display()))
            }
            Err(e) => self.problem(format!("{what} {} cannot be read: {e}", path.display())),
        }
    }

    /// Every blob of a `blobs/sha256` directory against its name; names
    /// that are not digests are problems unless `skip_temps` (a step
    /// store's staging files of a running build).
    fn blobs(&mut self, dir: &Path, what: &str, skip_temps: bool) -> Result<()> {
        if !dir.is_dir() {
            self.problem(format!("{what} directory {} is missing", dir.display()));
            return Ok(());
        }
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read {}", dir.display()))?;
        names.sort();
        for n in names {
            let name = n.to_string_lossy().into_owned();
            let path = dir.join(&n);
            if crate::digest::is_sha256_hex(&name) {
                self.file(&path, &name, what);
            } else if !skip_temps {
                self.problem(format!(
                    "{what} {} is not named by a sha256 digest",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    /// An output directory: its layouts, then the files its record lists.
    fn output(&mut self, out: &Path) -> Result<()> {
        let mut layouts = Vec::new();
        for e in walkdir::WalkDir::new(out)
            .max_depth(3)
            .sort_by_file_name()
            .into_iter()
        {
            let e = e.with_context(|| format!("cannot read {}", out.display()))?;
            if e.file_type().is_file() && e.file_name() == "oci-layout" {
                layouts.push(e.path().parent().unwrap_or(out).to_path_buf());
            }
        }
        if layouts.is_empty() {
            self.problem(format!(
                "{} holds no OCI layout (no oci-layout file)",
                out.display()
            ));
        }
        for l in &layouts {
            self.blobs(&l.join("blobs").join("sha256"), "blob", false)?;
            self.references(l);
        }
        let record = out.join("imgforge-record.json");
        if let Ok(bytes) = std::fs::read(&record) {
            let files = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("files").cloned());
            let Some(serde_json::Value::Object(files)) = files else {
                self.problem(format!(
                    "{} is not a build record (no \"files\")",
                    record.display()
                ));
                return Ok(());
            };
            for (rel, d) in files {
                let hex = d.as_str().unwrap_or_default();
                let hex = hex.strip_prefix("sha256:").unwrap_or(hex).to_string();
                self.file(&out.join(&rel), &hex, "output file");
            }
        }
        Ok(())
    }

    /// `index.json` → manifests → config and layers of one layout, each
    /// present (their bytes are checked by [`Checker::blobs`]).
    fn references(&mut self, layout: &Path) {
        let index = layout.join("index.json");
        let Some(v) = self.json(&index, "index") else {
            return;
        };
        let mut todo = vec![(v, index.display().to_string())];
        let mut done = BTreeSet::new();
        while let Some((doc, from)) = todo.pop() {
            let mut refs: Vec<(String, String)> = Vec::new();
            let d = |x: &serde_json::Value| {
                let mt = x["mediaType"].as_str().unwrap_or_default().to_string();
                x["digest"].as_str().map(|s| (s.to_string(), mt))
            };
            for m in doc["manifests"].as_array().into_iter().flatten() {
                refs.extend(d(m));
            }
            refs.extend(d(&doc["config"]));
            for l in doc["layers"].as_array().into_iter().flatten() {
                refs.extend(d(l));
            }
            for (digest, media_type) in refs {
                self.report.references += 1;
                let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
                let path = layout.join("blobs").join("sha256").join(hex);
                if !crate::digest::is_sha256_hex(hex) || !path.is_file() {
                    self.problem(format!(
                        "blob {digest} is missing: {from} names it ({})",
                        path.display()
                    ));
                    continue;
                }
                let nested = media_type.ends_with("manifest.v1+json")
                    || media_type.ends_with("index.v1+json")
                    || media_type.contains("manifest.list");
                if nested && done.insert(digest.clone()) {
                    if let Some(v) = self.json(&path, "manifest") {
                        todo.push((v, format!("manifest {digest}")));
                    }
                }
            }
        }
    }

    fn json(&mut self, path: &Path, what: &str) -> Option<serde_json::Value> {
        match std::fs::read(path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.problem(format!("{what} {} is not JSON: {e}", path.display()));
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.problem(format!("{what} {} is missing", path.display()));
                None
            }
            Err(e) => {
                self.problem(format!("{what} {} cannot be read: {e}", path.display()));
                None
            }
        }
    }
}
