//! `imgforge update [RECIPES] [PACKAGE...] [--dry-run] [--into DIR]`: move
//! pins to the archive's current candidates (all, or the named packages),
//! rewrite the recipe TOML in place with `toml_edit` (comments and layout
//! kept), re-lock, and print old -> new per package with the suite it came
//! from and the Debian changelog entries between the two versions (CVE ids
//! listed), read from the new `.deb`. This is how a team takes security
//! updates, reviewed. `--dry-run` writes nothing; `--into DIR` updates a
//! copy of the tree (`DIR/recipes`, `DIR/base`) and leaves the original as is.

use super::{CommonOptions, Status, load_tree, lock_tree, source_options};
use crate::archive::changelog;
use crate::pkgindex::Index;
use crate::recipe::Tree;
use crate::resolve::{self, LockedPackage};
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `update`.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    pub common: CommonOptions,
    /// Only these packages (default: every pin).
    pub packages: Vec<String>,
    pub dry_run: bool,
    /// Update a copy of the tree in this directory instead.
    pub into: Option<PathBuf>,
    pub quiet: bool,
}

/// One pin moved.
#[derive(Debug, Clone)]
pub struct Move {
    /// The recipe file.
    pub file: PathBuf,
    /// `packages` or `build.packages`.
    pub table: &'static str,
    pub package: String,
    pub old: String,
    pub new: String,
    /// `uri suite` it comes from.
    pub suite: String,
    /// Changelog entries after `old` up to `new`.
    pub entries: Vec<changelog::Entry>,
    /// CVE ids named in those entries.
    pub cves: Vec<String>,
    /// Why there are no entries, when there are none.
    pub note: Option<String>,
}

/// `imgforge update`.
pub fn update(opts: &UpdateOptions) -> Result<Vec<Move>> {
    let st = Status { quiet: opts.quiet };
    let mut common = opts.common.clone();
    if let (Some(into), false) = (&opts.into, opts.dry_run) {
        common = copy_tree(&common, into)?;
        st.say(
            "Copied",
            format!("the recipes and base to {}", into.display()),
        );
    }
    let tree = load_tree(&common)?;
    let src = source_options(&common, true);
    let (index, report) = resolve::load_index_report(&tree, &src)?;
    for s in &report.suites {
        st.say("Read", s);
    }
    let mut moves = planned_moves(&tree, &index, &report.suite_of, &opts.packages)?;
    moves
        .par_iter_mut()
        .try_for_each(|m| read_changelog(m, &index, &src))?;
    print_moves(&moves);
    if opts.dry_run {
        st.say(
            "Dry run",
            format!("{} pin(s) would move; nothing written", moves.len()),
        );
        return Ok(moves);
    }
    let mut by_file: BTreeMap<&Path, Vec<&Move>> = BTreeMap::new();
    for m in &moves {
        by_file.entry(&m.file).or_default().push(m);
    }
    for (file, ms) in by_file {
        rewrite(file, &ms)?;
        st.say("Updated", file.display());
    }
    let tree = load_tree(&common)?;
    lock_tree(&tree, &index, false, st)?;
    st.say("Finished", format!("{} pin(s) moved", moves.len()));
    Ok(moves)
}

/// Every pin (or the named ones) whose package has a higher version in the
/// sources, in file order.
fn planned_moves(
    tree: &Tree,
    index: &Index,
    suite_of: &BTreeMap<String, String>,
    only: &[String],
) -> Result<Vec<Move>> {
    let mut pins: Vec<(&Path, &'static str, &BTreeMap<String, String>)> =
        vec![(&tree.base.file, "packages", &tree.base.packages)];
    // The configure toolset never ships, but its pins age like any other.
    pins.push((
        &tree.base.file,
        "configure.toolset",
        &tree.base.configure.toolset,
    ));
    for img in &tree.images {
        pins.push((&img.file, "packages", &img.packages));
        if let Some(b) = &img.build {
            pins.push((&img.file, "build.packages", &b.packages));
        }
    }
    let unknown: Vec<&String> = only
        .iter()
        .filter(|n| !pins.iter().any(|(_, _, p)| p.contains_key(*n)))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "not pinned in any recipe: {}\nhelp: name packages as they appear in [packages] or [build] packages; dependencies follow their pins when the lock is rewritten",
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = Vec::new();
    for (file, table, p) in pins {
        for (name, old) in p {
            if !only.is_empty() && !only.contains(name) {
                continue;
            }
            let Some(best) = index.by_name.get(name).and_then(|l| l.first()) else {
                continue;
            };
            let new = best.version.to_string();
            if old
                .parse::<debversion::Version>()
                .is_ok_and(|o| o >= best.version)
            {
                continue;
            }
            out.push(Move {
                file: file.to_path_buf(),
                table,
                package: name.clone(),
                old: old.clone(),
                suite: suite_of
                    .get(&format!("{name}={new}"))
                    .cloned()
                    .unwrap_or_else(|| "the mirror".into()),
                new,
                entries: Vec::new(),
                cves: Vec::new(),
                note: None,
            });
        }
    }
    Ok(out)
}

/// Fetch the new `.deb` (into the store) and read its changelog.
fn read_changelog(m: &mut Move, index: &Index, src: &resolve::SourceOptions) -> Result<()> {
    let v: debversion::Version = m.new.parse().context("bad version")?;
    let rec = index.get(&m.package, &v).context("candidate vanished")?;
    let pkg = LockedPackage {
        name: rec.name.clone(),
        version: m.new.clone(),
        architecture: rec.architecture.clone(),
        source: rec.source.clone(),
        source_version: rec.source_version.clone(),
        sha256: rec.sha256.clone(),
        size: rec.size,
        filename: rec.file_name(),
        reason: "update".into(),
    };
    let deb = resolve::fetch(&pkg, index, src)?;
    match changelog::read(&deb, &m.package)? {
        Some(text) => {
            let old: debversion::Version = m.old.parse().context("bad pinned version")?;
            m.entries = changelog::between(&text, &old, &v);
            m.cves = changelog::cves(
                &m.entries
                    .iter()
                    .map(|e| e.text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        None => {
            m.note = Some(format!(
                "no usr/share/doc/{}/changelog.Debian.gz in the package (its doc directory may be another package's)",
                m.package
            ));
        }
    }
    Ok(())
}

const MAX_LINES: usize = 40;

fn print_moves(moves: &[Move]) {
    if moves.is_empty() {
        println!("every pin is at the sources' current version");
    }
    for m in moves {
        println!(
            "{} [{}] {} {} -> {}  ({})",
            m.file.display(),
            m.table,
            m.package,
            m.old,
            m.new,
            m.suite
        );
        if !m.cves.is_empty() {
            println!("    CVEs: {}", m.cves.join(", "));
        }
        if let Some(n) = &m.note {
            println!("    {n}");
        }
        let lines: Vec<&str> = m.entries.iter().flat_map(|e| e.text.lines()).collect();
        for l in lines.iter().take(MAX_LINES) {
            println!("    | {l}");
        }
        if lines.len() > MAX_LINES {
            println!("    | ... ({} more lines)", lines.len() - MAX_LINES);
        }
    }
}

/// Set the moved pins in one recipe file, keeping everything else as written.
fn rewrite(file: &Path, moves: &[&Move]) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{}: not valid TOML", file.display()))?;
    for m in moves {
        let mut item = doc.as_item_mut();
        for key in m.table.split('.') {
            item = item
                .as_table_like_mut()
                .and_then(|t| t.get_mut(key))
                .with_context(|| format!("{}: no [{}] table", file.display(), m.table))?;
        }
        let v = item
            .as_table_like_mut()
            .and_then(|t| t.get_mut(&m.package))
            .and_then(|i| i.as_value_mut())
            .with_context(|| format!("{}: no pin for {}", file.display(), m.package))?;
        let decor = v.decor().clone();
        *v = toml_edit::Value::from(m.new.as_str());
        *v.decor_mut() = decor;
    }
    super::write_atomic(file, doc.to_string().as_bytes())
}

/// Copy the recipes directory and the base recipe's directory into `into`
/// (`into/recipes`, `into/base`), replacing an earlier copy.
fn copy_tree(common: &CommonOptions, into: &Path) -> Result<CommonOptions> {
    let base = common
        .base
        .clone()
        .unwrap_or_else(|| common.recipes.join("..").join("base").join("base.toml"));
    let base_dir = base.parent().unwrap_or(Path::new("."));
    let base_name = base
        .file_name()
        .context("the base recipe path has no file name")?;
    let recipes = into.join("recipes");
    let bases = into.join("base");
    for (from, to) in [
        (&common.recipes, &recipes),
        (&base_dir.to_path_buf(), &bases),
    ] {
        if to.exists() {
            std::fs::remove_dir_all(to)
                .with_context(|| format!("cannot replace {}", to.display()))?;
        }
        copy_dir(from, to)?;
    }
    Ok(CommonOptions {
        recipes,
        base: Some(bases.join(base_name)),
        ..common.clone()
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for e in walkdir::WalkDir::new(from).sort_by_file_name() {
        let e = e.with_context(|| format!("cannot read {}", from.display()))?;
        let rel = e.path().strip_prefix(from).unwrap_or(e.path());
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest)
                .with_context(|| format!("cannot create {}", dest.display()))?;
        } else if e.file_type().is_file() {
            std::fs::copy(e.path(), &dest)
                .with_context(|| format!("cannot copy to {}", dest.display()))?;
        }
    }
    Ok(())
}
