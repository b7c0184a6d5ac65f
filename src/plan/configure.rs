//! Configuration steps: maintainer scripts and triggers of one root (see
//! [`crate::configure`]), keyed by the layers below, the toolset, the
//! packages, the debconf answers and the output settings.

use super::exec::Ctx;
use super::layers::LayerRecord;
use crate::configure::{self, PackageRef};
use crate::layer::{self, LayerBlob};
use crate::recipe::Recipe;
use crate::resolve::LockedPackage;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Instant;

/// What a configure step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigureRecord {
    pub layer: Option<LayerRecord>,
    /// `(package, path)` of every path the scripts created or changed.
    pub created: Vec<(String, String)>,
    pub scripts: usize,
}

impl super::store::StepRecord for ConfigureRecord {
    const KIND: &'static str = "configure";
    fn blobs(&self) -> Vec<String> {
        self.layer.iter().map(|l| l.digest.clone()).collect()
    }
}

/// The root a configure step runs in.
#[derive(Clone, Copy)]
pub struct Root<'x> {
    /// Its layers, bottom first.
    pub layers: &'x [LayerBlob],
    /// Closures already configured below (their packages are present).
    pub below: &'x [(&'x str, &'x str)],
    /// A build-stage root (never ships).
    pub scratch: bool,
    /// Symlinks of the layers below the packages being configured.
    pub lower: &'x BTreeSet<String>,
    pub toolset: Option<&'x Toolset>,
}

/// The root maintainer scripts run with, below the image (never shipped):
/// the toolset's packages and, once configured, their configuration.
#[derive(Debug, Clone)]
pub struct Toolset {
    pub packages: LayerRecord,
    pub config: Option<LayerRecord>,
}

/// Format of the remembered `dpkg -L` lists (NUL-separated paths, as
/// `layer::package::package_paths` gives them without merged-/usr: named
/// as the package ships them, as real dpkg records them).
const LIST_VERSION: &str = "v2";

fn ids(ps: &[&LockedPackage]) -> serde_json::Value {
    json!(
        ps.iter()
            .map(|p| [&p.name, &p.version, &p.sha256])
            .collect::<Vec<_>>()
    )
}

impl Ctx<'_> {
    /// Configure `recipe`'s `stage` packages on `layers`: the layer, or
    /// `None` when nothing changed, nothing has scripts, there is no
    /// toolset, or the recipe opted out (with a warning listing what would
    /// have been created).
    pub fn configure(
        &self,
        recipe: &Recipe,
        stage: &str,
        root: &Root,
    ) -> Result<Option<LayerRecord>> {
        let Root {
            layers,
            below,
            scratch,
            lower,
            toolset,
        } = *root;
        let label = match stage {
            "build" => format!("{} (build stage)", recipe.name),
            "toolset" => "configure toolset".to_string(),
            _ => recipe.name.clone(),
        };
        let own = self.closure(&recipe.name, stage);
        if own.is_empty() {
            return Ok(None);
        }
        let mut present = self.closure(&self.tree.base.name, "toolset");
        for (n, s) in below {
            present.extend(self.closure(n, s));
        }
        present.retain(|p| !own.iter().any(|o| o.name == p.name));
        if !recipe.configure.enabled {
            self.warn_skipped(&label, &own)?;
            return Ok(None);
        }
        let Some(toolset) = toolset else {
            self.warn_no_toolset(&label, &own)?;
            return Ok(None);
        };
        let key = super::key::key(
            "configure",
            &json!({
                "layers": layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
                "toolset": toolset.packages.digest,
                "toolset-config": toolset.config.as_ref().map(|c| &c.digest),
                "configure": ids(&own),
                "present": ids(&present),
                "debconf": recipe.configure.debconf,
                "enabled": recipe.configure.enabled,
                "sde": self.sde,
                "arch": self.tree.source.arch,
                "compression": format!("{:?}", self.compression_for(scratch)),
                "lower": lower.iter().collect::<Vec<_>>(),
            }),
        );
        let cached = self.recall::<ConfigureRecord>(&key).filter(|r| {
            r.layer.as_ref().is_none_or(|l| match scratch {
                true => self.store.has_blob(&l.digest),
                false => self.reusable(&l.digest, &format!("configure {label}")),
            })
        });
        let rec = match cached {
            Some(r) => {
                self.count.reused("configure");
                self.share(&key, &r);
                r
            }
            None => {
                let r = self.run_configure(&label, recipe, &own, &present, root)?;
                self.keep(&key, &r)?;
                self.count.built("configure");
                r
            }
        };
        Ok(rec.layer)
    }

    fn run_configure(
        &self,
        label: &str,
        recipe: &Recipe,
        own: &[&LockedPackage],
        present: &[&LockedPackage],
        root: &Root,
    ) -> Result<ConfigureRecord> {
        let toolset = root.toolset.expect("checked by the caller");
        let t = Instant::now();
        let configure = self.listed_refs(own)?;
        // Every package present gets its file list too, so `dpkg -S` and
        // `dpkg -L` answer for the base's and the toolset's packages.
        let present = self.listed_refs(present)?;
        let spec = configure::ConfigureSpec {
            label: label.to_string(),
            layers: root
                .layers
                .iter()
                .map(|l| self.store.blob(&l.digest))
                .collect(),
            toolset_layer: Some(self.store.blob(&toolset.packages.digest)),
            toolset_config: toolset.config.as_ref().map(|c| self.store.blob(&c.digest)),
            configure,
            present,
            debconf: recipe.configure.debconf.clone(),
            source_date_epoch: self.sde,
            arch: self.tree.source.arch.clone(),
        };
        let out = configure::configure(
            &spec,
            &configure::ConfigureOptions {
                work_dir: self.work.clone(),
                runtime: None,
                lower_symlinks: root.lower.clone(),
                logs: Some(self.opts.common.cache_dir().join("logs")),
                trees: self.roots_trees(),
                write: layer::WriteOptions {
                    blobs_dir: self.store.blobs_dir(),
                    compression: self.compression_for(root.scratch),
                },
            },
        )?;
        if let Some(l) = &out.layer {
            self.store.seal_blob(&l.digest)?;
        }
        if recipe.configure.enabled {
            self.st.say(
                "Configured",
                format!(
                    "{label}: {} script(s), {} path(s) in {:.1}s",
                    out.scripts,
                    out.created.len(),
                    t.elapsed().as_secs_f64()
                ),
            );
        }
        Ok(ConfigureRecord {
            layer: out
                .layer
                .as_ref()
                .map(|b| LayerRecord::from_blob(b, Vec::new())),
            created: out.created,
            scripts: out.scripts,
        })
    }

    /// The paths `dpkg -L` lists for `p`, remembered in the store by the
    /// package's sha256 (and the entry cap, which can refuse a package), so
    /// configuring again (a debconf answer changed, a package below was
    /// updated) does not decompress every package for its file list.
    fn dpkg_list(&self, p: &LockedPackage, r: &PackageRef) -> Result<Vec<String>> {
        let opts = layer::package::PackageOptions {
            merged_usr: false,
            ..self.package_options()
        };
        let rel = std::path::Path::new("dpkg-lists")
            .join(LIST_VERSION)
            .join(format!(
                "{}-{}",
                p.sha256.trim_start_matches("sha256:"),
                opts.limits.entries
            ));
        self.store.mark(&rel);
        let memo = self.store.root().join(rel);
        if let Ok(bytes) = std::fs::read(&memo) {
            return Ok(bytes
                .split(|b| *b == 0)
                .filter(|l| !l.is_empty())
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect());
        }
        let paths = layer::package::package_paths(
            layer::package::PackageRef {
                name: &p.name,
                deb: &r.deb,
                control: &r.control,
            },
            &opts,
        )?;
        let mut bytes = Vec::new();
        for l in &paths {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(0);
        }
        if let Some(dir) = memo.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_atomic(&memo, &bytes)?;
        Ok(paths)
    }

    /// The entries of an image's dpkg database ([`configure::database_entries`]).
    pub(super) fn dpkg_database_entries(&self, ps: &[&LockedPackage]) -> Result<Vec<layer::Entry>> {
        Ok(configure::database_entries(
            &self.listed_refs(ps)?,
            &self.tree.source.arch,
            self.sde,
        ))
    }

    /// Each package's [`PackageRef`] with the paths `dpkg -L` lists.
    fn listed_refs(&self, ps: &[&LockedPackage]) -> Result<Vec<PackageRef>> {
        ps.iter()
            .map(|p| {
                let mut r = self.package_ref(p)?;
                r.paths = self.dpkg_list(p, &r)?;
                Ok(r)
            })
            .collect()
    }

    fn package_ref(&self, p: &LockedPackage) -> Result<PackageRef> {
        let f = self.inputs.get(p)?;
        Ok(PackageRef {
            name: p.name.clone(),
            deb: f.deb.clone(),
            control: f.control.clone(),
            paths: Vec::new(),
        })
    }

    /// `configure = false`: nothing runs; say which packages' scripts were
    /// skipped, read from their control data.
    fn warn_skipped(&self, label: &str, own: &[&LockedPackage]) -> Result<()> {
        let mut list = Vec::new();
        for p in own {
            let files = self.package_ref(p)?.script_files();
            if !files.is_empty() {
                list.push(format!("    {} ({})", p.name, files.join(", ")));
            }
        }
        if !list.is_empty() {
            self.st.say(
                "Warning",
                format!(
                    "{label}: configure = false: the maintainer scripts of {} package(s) did not run:\n{}",
                    list.len(),
                    list.join("\n")
                ),
            );
        }
        Ok(())
    }

    fn warn_no_toolset(&self, label: &str, own: &[&LockedPackage]) -> Result<()> {
        let mut with = Vec::new();
        for p in own {
            // Remembered by sha256, so an unchanged rebuild opens no package.
            let key = super::key::key("has-scripts", &json!(p.sha256));
            let has = match self.store.get::<bool>("has-scripts", &key) {
                Some(h) => h,
                None => {
                    let h = self.package_ref(p)?.has_scripts();
                    self.store.put("has-scripts", &key, &h)?;
                    h
                }
            };
            if has {
                with.push(p.name.as_str());
            }
        }
        if !with.is_empty() {
            self.st.say(
                "Warning",
                format!(
                    "{label}: no [configure] toolset in the base recipe: maintainer scripts of {} not run",
                    with.join(", ")
                ),
            );
        }
        Ok(())
    }
}
