//! The plan's inputs: the locked packages, fetched and read only when a
//! step that needs their bytes has to run.
//!
//! A step's key names a package by the sha256 in the lock, so a build whose
//! steps are all in the store never opens a `.deb`. The first step that
//! needs one fetches it (sha256-checked against the lock, see
//! [`resolve::fetch`]) and reads its control data, checking that it is the
//! package the lock names; later steps share that result.

use crate::deb::{self, ControlInfo};
use crate::pkgindex::Index;
use crate::resolve::{self, LockedPackage, SourceOptions};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// A fetched, checked package.
#[derive(Debug)]
pub struct Fetched {
    pub locked: LockedPackage,
    pub deb: PathBuf,
    pub control: ControlInfo,
}

/// Lazily fetched packages of one build.
pub struct Inputs<'a> {
    index: &'a Index,
    src: &'a SourceOptions,
    limits: deb::Limits,
    cells: BTreeMap<(String, String), OnceLock<Arc<Fetched>>>,
}

impl<'a> Inputs<'a> {
    /// Every package of `lock` may be asked for.
    pub fn new(
        lock: &resolve::Lock,
        index: &'a Index,
        src: &'a SourceOptions,
        limits: deb::Limits,
    ) -> Inputs<'a> {
        let cells = lock
            .images
            .iter()
            .flat_map(|i| i.packages.iter())
            .map(|p| ((p.name.clone(), p.version.clone()), OnceLock::new()))
            .collect();
        Inputs {
            index,
            src,
            limits,
            cells,
        }
    }

    /// The package, fetched and read on first use.
    pub fn get(&self, p: &LockedPackage) -> Result<Arc<Fetched>> {
        let cell = &self.cells[&(p.name.clone(), p.version.clone())];
        if let Some(f) = cell.get() {
            return Ok(f.clone());
        }
        let deb = resolve::fetch(p, self.index, self.src)?;
        let control = deb::read_control(&deb, &self.limits)?;
        deb::check_identity(&deb, &control, &p.identity())?;
        let f = Arc::new(Fetched {
            locked: p.clone(),
            deb,
            control,
        });
        // Two threads may race here; both results are the same package.
        Ok(cell.get_or_init(|| f).clone())
    }

    /// How many packages were fetched and read so far.
    pub fn fetched(&self) -> usize {
        self.cells.values().filter(|c| c.get().is_some()).count()
    }
}
