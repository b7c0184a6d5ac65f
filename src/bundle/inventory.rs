//! `imgforge bundle inventory --docker | --from REGISTRY[/NAMESPACE] -o FILE`:
//! what a site holds, for the vendor's next `bundle --since FILE`.
//!
//! From a registry: every tagged image under the namespace (its manifest,
//! config and layer digests) and the set of those blobs; a delta against it
//! leaves out every layer the registry has (a registry needs only blobs it
//! lacks). From docker: every image the daemon holds, by image ID (the
//! config digest) with its layers' diff IDs, and the chain IDs of their
//! stacks; a delta against it leaves out a layer only when its whole stack
//! is held (Docker skips a layer by chain ID; see [`super::needed_layers`]).
//! Versioned JSON, sorted: the same site gives the same bytes.

use super::{BundleError, io_err};
use crate::registry::site::{self, Connect};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The inventory format version this imgforge writes and reads.
pub const VERSION: u32 = 1;

/// What a site holds (`docs/bundle.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inventory {
    /// [`VERSION`].
    pub inventory_version: u32,
    /// `docker` or `registry`.
    pub kind: String,
    /// `docker`, or the registry as given (`HOST[/NAMESPACE]`).
    pub source: String,
    /// By reference.
    pub images: Vec<SiteImage>,
    /// Registry: every manifest, config and layer digest of the images.
    pub blobs: Vec<String>,
    /// Docker: the chain ID of every layer stack the images hold.
    pub chain_ids: Vec<String>,
}

/// One image at the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SiteImage {
    /// Registry: `repository:tag`; docker: a `RepoTags` entry, or the image
    /// ID of an untagged image.
    pub reference: String,
    /// Registry: the manifest digest; docker: none (docker keeps no manifest).
    pub manifest: Option<String>,
    /// The config digest (docker: the image ID).
    pub config: String,
    /// Registry: layer digests; docker: diff IDs (uncompressed). Bottom first.
    pub layers: Vec<String>,
}

impl Inventory {
    pub fn to_bytes(&self) -> Vec<u8> {
        let v = serde_json::to_value(self).expect("the inventory serializes");
        crate::json::to_canonical_pretty(&v)
    }

    fn sorted(mut self) -> Inventory {
        self.images.sort_by(|a, b| a.reference.cmp(&b.reference));
        self.images.dedup();
        self.blobs.sort();
        self.blobs.dedup();
        self.chain_ids.sort();
        self.chain_ids.dedup();
        self
    }
}

/// Parse inventory bytes; `None` when they are not an inventory at all.
pub fn parse(bytes: &[u8]) -> Option<Result<Inventory, String>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let n = v.get("inventoryVersion")?.as_u64();
    Some(match n {
        Some(n) if n == u64::from(VERSION) => serde_json::from_value(v)
            .map_err(|e| format!("not a site inventory: {e}"))
            .and_then(checked),
        _ => Err(format!(
            "inventory format version {n:?}; this imgforge reads version {VERSION}"
        )),
    })
}

/// Refuse an inventory whose fields a delta would trust blindly: an unknown
/// kind (read as a registry's, it would leave out every blob it names), a
/// digest that is not `sha256:` and 64 lowercase hex digits, a source with
/// control characters (it is copied into the bundle manifest).
fn checked(inv: Inventory) -> Result<Inventory, String> {
    if inv.kind != "docker" && inv.kind != "registry" {
        return Err(format!(
            "inventory kind {:?}: expected \"docker\" or \"registry\"",
            inv.kind
        ));
    }
    if inv.source.chars().any(char::is_control) {
        return Err(format!(
            "inventory source {:?} has control characters",
            inv.source
        ));
    }
    let is_digest = |d: &str| {
        d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    };
    let images = inv.images.iter();
    let digests = images
        .flat_map(|i| i.manifest.iter().chain([&i.config]).chain(&i.layers))
        .chain(&inv.blobs)
        .chain(&inv.chain_ids);
    for d in digests {
        if !is_digest(d) {
            return Err(format!("{d:?} is not a sha256 digest"));
        }
    }
    Ok(inv)
}

/// Chain IDs of a stack of diff IDs, bottom first: the first is its diff
/// ID, each next `sha256("<chain below> <diff ID>")` (the OCI image spec).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(below) => format!(
                "sha256:{}",
                crate::digest::sha256_hex(format!("{below} {d}").as_bytes())
            ),
        };
        out.push(next);
    }
    out
}

/// Where an inventory comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The docker client to run (`docker`).
    Docker(String),
    Registry(Connect),
}

/// Options of [`inventory`].
#[derive(Debug, Clone)]
pub struct InventoryOptions {
    pub from: Source,
    pub dest: PathBuf,
}

/// Take the inventory and write it to `opts.dest` (atomically).
pub fn inventory(
    opts: &InventoryOptions,
    progress: &dyn Fn(String),
) -> Result<Inventory, BundleError> {
    let inv = match &opts.from {
        Source::Docker(docker) => of_docker(docker, progress)?,
        Source::Registry(c) => of_registry(c, progress)?,
    }
    .sorted();
    let bytes = inv.to_bytes();
    crate::fsutil::write_replacing(
        &opts.dest,
        |w| std::io::Write::write_all(w, &bytes).map_err(io_err(&opts.dest)),
        |p, e| io_err(p)(e),
    )?;
    Ok(inv)
}

fn of_registry(c: &Connect, progress: &dyn Fn(String)) -> Result<Inventory, BundleError> {
    let (dest, client) = site::connect(c)?;
    let mut inv = Inventory {
        inventory_version: VERSION,
        kind: "registry".into(),
        source: c.destination.trim_end_matches('/').to_string(),
        images: Vec::new(),
        blobs: Vec::new(),
        chain_ids: Vec::new(),
    };
    for repo in site::repositories(&client, &dest.namespace)? {
        progress(format!("listing {repo}"));
        for tag in site::tags(&client, &repo)? {
            let reference = format!("{repo}:{tag}");
            let Some((body, digest)) = site::manifest(&client, &repo, &tag)? else {
                continue;
            };
            add_manifest(&client, &repo, &reference, &body, digest, &mut inv)?;
        }
    }
    Ok(inv)
}

/// One manifest (or each image manifest of an index) into `inv`.
fn add_manifest(
    client: &crate::registry::client::Client,
    repo: &str,
    reference: &str,
    body: &str,
    digest: Option<String>,
    inv: &mut Inventory,
) -> Result<(), BundleError> {
    let digest =
        digest.unwrap_or_else(|| format!("sha256:{}", crate::digest::sha256_hex(body.as_bytes())));
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    inv.blobs.push(digest.clone());
    if let Some(children) = v["manifests"].as_array() {
        for c in children {
            let Some(d) = c["digest"].as_str() else {
                continue;
            };
            if let Some((b, cd)) = site::manifest(client, repo, d)? {
                let sub: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                if sub["manifests"].is_null() {
                    add_manifest(client, repo, reference, &b, cd, inv)?;
                }
            }
        }
        return Ok(());
    }
    let digests = |x: &serde_json::Value| -> Vec<String> {
        x.as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string))
            .collect()
    };
    let config = v["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let layers = digests(&v["layers"]);
    inv.blobs.push(config.clone());
    inv.blobs.extend(layers.iter().cloned());
    inv.images.push(SiteImage {
        reference: reference.to_string(),
        manifest: Some(digest),
        config,
        layers,
    });
    Ok(())
}

fn docker_err(docker: &str, what: &str, detail: String) -> BundleError {
    BundleError::Install(format!(
        "{docker} {what}: {detail}\nhelp: the inventory asks the docker daemon what it holds: check that it runs and that this user may talk to it"
    ))
}

fn run_docker(docker: &str, args: &[&str]) -> Result<Vec<u8>, BundleError> {
    let what = args.join(" ");
    let o = std::process::Command::new(docker)
        .args(args)
        .output()
        .map_err(|e| docker_err(docker, &what, e.to_string()))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        return Err(docker_err(docker, &what, format!("{}: {err}", o.status)));
    }
    Ok(o.stdout)
}

fn of_docker(docker: &str, progress: &dyn Fn(String)) -> Result<Inventory, BundleError> {
    progress("listing docker images".into());
    let ids = run_docker(docker, &["image", "ls", "--all", "--quiet", "--no-trunc"])?;
    let ids: BTreeSet<String> = String::from_utf8_lossy(&ids)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut inv = Inventory {
        inventory_version: VERSION,
        kind: "docker".into(),
        source: "docker".into(),
        images: Vec::new(),
        blobs: Vec::new(),
        chain_ids: Vec::new(),
    };
    if ids.is_empty() {
        return Ok(inv);
    }
    let mut args = vec!["image", "inspect"];
    args.extend(ids.iter().map(String::as_str));
    let out = run_docker(docker, &args)?;
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out)
        .map_err(|e| docker_err(docker, "image inspect", format!("not JSON: {e}")))?;
    for i in all {
        let id = i["Id"].as_str().unwrap_or_default().to_string();
        let layers: Vec<String> = i["RootFS"]["Layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        inv.chain_ids.extend(chain_ids(&layers));
        let mut refs: Vec<String> = i["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        if refs.is_empty() {
            refs.push(id.clone());
        }
        for r in refs {
            inv.images.push(SiteImage {
                reference: r,
                manifest: None,
                config: id.clone(),
                layers: layers.clone(),
            });
        }
    }
    Ok(inv)
}

/// Read an inventory file (for `--since` and `--base`), with the `sha256:`
/// of its bytes; `None` when the file is not an inventory.
pub fn read(path: &Path) -> Result<Option<(Inventory, String)>, BundleError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut first = [0u8; 1];
    if f.read(&mut first).map_err(io_err(path))? != 1 || first[0] != b'{' {
        return Ok(None);
    }
    let mut bytes = first.to_vec();
    f.take(super::MAX_MANIFEST)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    match parse(&bytes) {
        None => Ok(None),
        Some(Err(reason)) => Err(BundleError::Previous {
            path: path.to_path_buf(),
            reason,
        }),
        Some(Ok(inv)) => Ok(Some((
            inv,
            format!("sha256:{}", crate::digest::sha256_hex(&bytes)),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let c = chain_ids(&[d('a'), d('b')]);
        assert_eq!(c[0], d('a'));
        let want = crate::digest::sha256_hex(format!("{} {}", d('a'), d('b')).as_bytes());
        assert_eq!(c[1], format!("sha256:{want}"));
        assert_eq!(chain_ids(&[]), Vec::<String>::new());
    }

    #[test]
    fn parse_refuses_what_a_delta_would_trust_blindly() {
        let d = format!("sha256:{}", "a".repeat(64));
        let inv = |kind: &str, source: &str, blob: &str| {
            format!(
                r#"{{"inventoryVersion":1,"kind":"{kind}","source":"{source}","images":[],"blobs":["{blob}"],"chainIds":[]}}"#
            )
        };
        let ok = parse(inv("registry", "127.0.0.1:5000", &d).as_bytes());
        assert!(matches!(ok, Some(Ok(_))), "{ok:?}");
        for (bytes, want) in [
            (inv("tape", "x", &d), "inventory kind"),
            (inv("docker", "x\\u001b[2J", &d), "control characters"),
            (inv("registry", "x", "sha256:AB"), "not a sha256 digest"),
            (
                inv("registry", "x", &format!("md5:{}", "a".repeat(64))),
                "not a sha256",
            ),
        ] {
            let got = parse(bytes.as_bytes());
            assert!(
                matches!(&got, Some(Err(e)) if e.contains(want)),
                "{bytes}: {got:?}"
            );
        }
        assert!(parse(b"{}").is_none());
        assert!(parse(br#"{"inventoryVersion":2}"#).unwrap().is_err());
    }
}
