//! `imgforge add PACKAGE[=VERSION]... --image NAME`: pin packages in one
//! recipe at the version the configured sources have (the newest, or the
//! one named; a version they lack is refused with the ones they have),
//! edit the recipe with `toml_edit` (comments and layout kept, as
//! `update`), re-lock, and print what entered the image's closure with the
//! `.deb` sizes (total before -> after). A failed re-lock puts the recipe
//! back as it was. [`edit_and_relock`] and [`print_change`] serve
//! `remove` too.

use super::{CommonOptions, Status, load_tree, lock_tree, source_options};
use crate::metadata::human;
use crate::pkgindex::Index;
use crate::recipe::{From, Tree};
use crate::resolve::{self, Lock};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `add` and `remove`.
#[derive(Debug, Clone)]
pub struct PinOptions {
    pub common: CommonOptions,
    /// The image whose recipe is edited (the base's name edits the base).
    pub image: String,
    /// `NAME` or `NAME=VERSION` (`remove`: names).
    pub packages: Vec<String>,
    pub quiet: bool,
}

/// Errors of `add` and `remove`.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "no image named {image:?} in {dir}\nhelp: the tree's images: {known} (`--image {base}` edits the base recipe)"
    )]
    UnknownImage {
        image: String,
        dir: PathBuf,
        known: String,
        base: String,
    },
    #[error(
        "{spec:?} is not a Debian package name\nhelp: name a package as NAME or NAME=VERSION, e.g. curl=7.88.1-10+deb12u14"
    )]
    BadName { spec: String },
    #[error(
        "{package} is not in the configured sources{providers}\nhelp: check the name (the sources are the base recipe's archives, the host's apt configuration, or --mirror)"
    )]
    NotInSources { package: String, providers: String },
    #[error(
        "{package} {version} is not in the configured sources; they have {available}\nhelp: add {package}={newest}, or omit the version to pin the newest"
    )]
    MissingVersion {
        package: String,
        version: String,
        available: String,
        newest: String,
    },
    #[error(
        "{package} is not pinned in {file}\nhelp: `remove` takes the names in the recipe's [packages]; what they pull in leaves with them"
    )]
    NotPinned { package: String, file: PathBuf },
}

/// `imgforge add`: returns the pins written.
pub fn add(opts: &PinOptions) -> Result<Vec<(String, String)>> {
    let st = Status { quiet: opts.quiet };
    let tree = load_tree(&opts.common)?;
    let file = recipe_file(&tree, &opts.image)?;
    let index = resolve::load_index(&tree, &source_options(&opts.common, true))?;
    let pins = opts
        .packages
        .iter()
        .map(|spec| choose(&index, spec))
        .collect::<Result<Vec<_>, PinError>>()?;
    let before = before_lock(&tree, &index);
    let after = edit_and_relock(&opts.common, &file, &index, st, |doc| {
        set_pins(doc, &pins);
        Ok(())
    })?;
    for (name, version) in &pins {
        st.say(
            "Pinned",
            format!("{name} = \"{version}\" in {}", file.display()),
        );
    }
    print_change(&tree, &opts.image, before.as_ref(), &after);
    Ok(pins)
}

/// The lock before an edit: the file, else the tree resolved as it is.
pub(super) fn before_lock(tree: &Tree, index: &Index) -> Option<Lock> {
    Lock::read(&tree.lock_path())
        .ok()
        .or_else(|| resolve::resolve_tree(tree, index).ok())
}

/// The recipe file of `image` (the base's name: the base recipe).
pub(super) fn recipe_file(tree: &Tree, image: &str) -> Result<PathBuf, PinError> {
    if image == tree.base.name {
        return Ok(tree.base.file.clone());
    }
    match tree.images.iter().find(|i| i.name == image) {
        Some(i) => Ok(i.file.clone()),
        None => Err(PinError::UnknownImage {
            image: image.to_string(),
            dir: tree.dir.clone(),
            known: tree
                .images
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            base: tree.base.name.clone(),
        }),
    }
}

/// The version to pin for `NAME[=VERSION]`: the one named if the sources
/// have it, else their newest.
fn choose(index: &Index, spec: &str) -> Result<(String, String), PinError> {
    let (name, version) = match spec.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (spec.trim(), None),
    };
    if !crate::recipe::valid_package_name(name) {
        return Err(PinError::BadName { spec: spec.into() });
    }
    let Some(list) = index.by_name.get(name).filter(|l| !l.is_empty()) else {
        let provs: Vec<&str> = index
            .providers
            .get(name)
            .map(|p| p.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default();
        return Err(PinError::NotInSources {
            package: name.into(),
            providers: match provs.is_empty() {
                true => String::new(),
                false => format!(
                    " (a virtual package; add one that provides it: {})",
                    provs.join(", ")
                ),
            },
        });
    };
    let newest = list[0].version.to_string();
    match version {
        None => Ok((name.into(), newest)),
        Some(v) if list.iter().any(|r| r.version.to_string() == v) => Ok((name.into(), v.into())),
        Some(v) => Err(PinError::MissingVersion {
            package: name.into(),
            version: v.into(),
            available: list
                .iter()
                .map(|r| r.version.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            newest,
        }),
    }
}

/// Set `pins` in the recipe's `[packages]` (created when missing), keeping
/// the decoration of a pin that is there already.
fn set_pins(doc: &mut toml_edit::DocumentMut, pins: &[(String, String)]) {
    if doc
        .get("packages")
        .and_then(|i| i.as_table_like())
        .is_none()
    {
        doc.insert("packages", toml_edit::table());
    }
    let table = doc["packages"]
        .as_table_like_mut()
        .expect("a table was just ensured");
    for (name, version) in pins {
        match table.get_mut(name).and_then(|i| i.as_value_mut()) {
            Some(v) => {
                let decor = v.decor().clone();
                *v = toml_edit::Value::from(version.as_str());
                *v.decor_mut() = decor;
            }
            None => {
                table.insert(name, toml_edit::value(version.as_str()));
            }
        }
    }
}

/// Edit `file` with `edit`, re-read the tree and re-lock; put the file
/// back as it was when any of that fails.
pub(super) fn edit_and_relock(
    common: &CommonOptions,
    file: &Path,
    index: &Index,
    st: Status,
    edit: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<()>,
) -> Result<Lock> {
    let original =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut doc: toml_edit::DocumentMut = original
        .parse()
        .with_context(|| format!("{}: not valid TOML", file.display()))?;
    edit(&mut doc)?;
    super::write_atomic(file, doc.to_string().as_bytes())?;
    let relock = || -> Result<Lock> {
        let tree = load_tree(common)?;
        lock_tree(&tree, index, false, st)
    };
    relock().inspect_err(|_| {
        if super::write_atomic(file, original.as_bytes()).is_ok() {
            st.say("Restored", file.display());
        }
    })
}

/// The packages an image ships per the lock: its own closure and, when it
/// is built on the base, the base's. name -> (version, .deb size).
fn shipped(lock: &Lock, base: Option<&str>, image: &str) -> BTreeMap<String, (String, u64)> {
    let mut out = BTreeMap::new();
    let closures = [Some(image), base].map(|n| n.and_then(|n| lock.get(n, "runtime")));
    for p in closures.into_iter().flatten().flat_map(|c| &c.packages) {
        out.entry(p.name.clone())
            .or_insert((p.version.clone(), p.size));
    }
    out
}

/// Print what entered, left or moved in `image`'s shipped closure, and the
/// total `.deb` size before -> after.
pub(super) fn print_change(tree: &Tree, image: &str, before: Option<&Lock>, after: &Lock) {
    let on_base = tree
        .images
        .iter()
        .any(|i| i.name == image && i.from == From::Base);
    let base = on_base.then_some(tree.base.name.as_str());
    let old = before.map(|b| shipped(b, base, image)).unwrap_or_default();
    let new = shipped(after, base, image);
    for (name, (v, size)) in &new {
        match old.get(name) {
            None => println!("  + {name} {v} ({})", human(*size)),
            Some((ov, _)) if ov != v => println!("  ~ {name} {ov} -> {v}"),
            _ => {}
        }
    }
    for (name, (v, size)) in &old {
        if !new.contains_key(name) {
            println!("  - {name} {v} ({})", human(*size));
        }
    }
    let total = |m: &BTreeMap<String, (String, u64)>| m.values().map(|(_, s)| s).sum::<u64>();
    println!(
        "{image}: {} -> {} packages, {} -> {} of .deb files",
        old.len(),
        new.len(),
        human(total(&old)),
        human(total(&new))
    );
}
