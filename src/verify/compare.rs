//! Comparing build outputs: two output directories ([`compare_dirs`]), or a
//! record against a new output ([`compare_record`]).
//!
//! The walk goes down the tree and stops at the first difference: images in
//! `index.json` order (sorted by reference); inside an image its layers
//! bottom first (a changed layer changes the config's `diff_ids` and the
//! manifest, so the layer is the cause), then the config, then the manifest;
//! then `index.json`; then every other file in path order, the record last
//! (it only repeats the digests of the rest). Layers are diffed by streaming
//! both tars ([`super::tardiff`]), JSON documents field by field
//! ([`super::jsondiff`]), other files line by line or byte by byte.

use super::report::{Counts, Difference, Field, Object};
use super::{VerifyError, jsondiff, tardiff};
use crate::plan::record::{self, Record};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What a comparison found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub counts: Counts,
    pub difference: Option<Difference>,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn hex(d: &str) -> &str {
    d.trim_start_matches("sha256:")
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs").join("sha256").join(hex(digest))
}

fn read_json(path: &Path) -> Result<Value, VerifyError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| VerifyError::BadOutput {
        path: path.to_path_buf(),
        reason: format!("not JSON: {e}"),
    })
}

/// Files below `dir`, relative, sorted.
fn list_files(dir: &Path) -> Result<BTreeSet<String>, VerifyError> {
    let mut out = BTreeSet::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| VerifyError::Io {
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        if e.file_type().is_dir() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("walk stays below the dir")
            .to_string_lossy()
            .into_owned();
        out.insert(rel);
    }
    Ok(out)
}

/// True when both files have the same bytes; streams both.
pub fn same_bytes(a: &Path, b: &Path) -> Result<bool, VerifyError> {
    let (ma, mb) = (
        std::fs::metadata(a).map_err(io_err(a))?,
        std::fs::metadata(b).map_err(io_err(b))?,
    );
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let mut fa = io::BufReader::new(std::fs::File::open(a).map_err(io_err(a))?);
    let mut fb = io::BufReader::new(std::fs::File::open(b).map_err(io_err(b))?);
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(io_err(a))?;
        let m = read_full(&mut fb, &mut bb).map_err(io_err(b))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn sha_file(p: &Path) -> Result<String, VerifyError> {
    let (h, _) = crate::digest::sha256_file(p).map_err(io_err(p))?;
    Ok(format!("sha256:{h}"))
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The object kind of an output file, by name.
fn object_of_file(rel: &str) -> Object {
    if rel == "index.json" {
        Object::Index
    } else {
        Object::File
    }
}

/// The first difference between two files known to differ: JSON field,
/// text line, or byte offset.
pub fn diff_files(a: &Path, b: &Path, rel: &str) -> Result<Difference, VerifyError> {
    let (da, db) = (sha_file(a)?, sha_file(b)?);
    let ba = std::fs::read(a).map_err(io_err(a))?;
    let bb = std::fs::read(b).map_err(io_err(b))?;
    let obj = object_of_file(rel);
    let mut d = if let (Ok(ja), Ok(jb)) = (
        serde_json::from_slice::<Value>(&ba),
        serde_json::from_slice::<Value>(&bb),
    ) {
        match jsondiff::diff(&ja, &jb) {
            Some(j) => json_difference(obj, j, rel),
            None => Difference::new(
                obj,
                Field::Content,
                json!(da),
                json!(db),
                format!("{rel}: same JSON values, different bytes (formatting or key order)"),
            ),
        }
    } else if let (Ok(ta), Ok(tb)) = (std::str::from_utf8(&ba), std::str::from_utf8(&bb)) {
        let (la, lb): (Vec<&str>, Vec<&str>) = (ta.lines().collect(), tb.lines().collect());
        let i = (0..la.len().max(lb.len()))
            .find(|&i| la.get(i) != lb.get(i))
            .unwrap_or(la.len().min(lb.len()));
        let mut d = Difference::new(
            obj,
            Field::Line,
            la.get(i).map_or(Value::Null, |l| json!(l)),
            lb.get(i).map_or(Value::Null, |l| json!(l)),
            format!("{rel}: line {} differs", i + 1),
        );
        d.path = Some(format!("line {}", i + 1));
        d
    } else {
        let i = (0..ba.len().max(bb.len()))
            .find(|&i| ba.get(i) != bb.get(i))
            .unwrap_or(0);
        let byte = |v: &[u8]| v.get(i).map_or(Value::Null, |x| json!(format!("{x:#04x}")));
        let mut d = Difference::new(
            obj,
            Field::Byte,
            byte(&ba),
            byte(&bb),
            format!("{rel}: byte {i} differs"),
        );
        d.path = Some(format!("byte {i}"));
        d
    };
    d.file = Some(rel.to_string());
    d.digest_a = Some(da);
    d.digest_b = Some(db);
    Ok(d)
}

fn json_difference(obj: Object, j: jsondiff::JsonDifference, what: &str) -> Difference {
    let a = j.a.unwrap_or(Value::Null);
    let b = j.b.unwrap_or(Value::Null);
    let detail = format!("{what}: field {} differs: a {a}, b {b}", j.path);
    let mut d = Difference::new(obj, Field::Json, a, b, detail);
    d.path = Some(j.path);
    d
}

/// Deep diff of two layer blobs known to differ.
pub fn diff_layer_blobs(
    a: &Path,
    b: &Path,
    diff_ids: (Option<&str>, Option<&str>),
) -> Result<Difference, VerifyError> {
    let ra = crate::layer::open_blob(a).map_err(io_err(a))?;
    let rb = crate::layer::open_blob(b).map_err(io_err(b))?;
    let out = tardiff::diff_tars(ra, rb).map_err(|e| VerifyError::BadOutput {
        path: a.to_path_buf(),
        reason: format!("reading the layers as tar streams: {e}"),
    })?;
    Ok(match out.difference {
        Some(e) => {
            let mut d = Difference::new(Object::Layer, e.field, e.a, e.b, e.detail);
            d.path = Some(e.path);
            d.also = e.also;
            d
        }
        None if diff_ids.0.is_some() && diff_ids.0 == diff_ids.1 => Difference::new(
            Object::Layer,
            Field::Compression,
            json!(diff_ids.0),
            json!(diff_ids.1),
            "the uncompressed tars are identical (same diff_id) but the compressed bytes differ: the compressor is not deterministic (check the flate2/zstd versions in Cargo.lock)".into(),
        ),
        None => Difference::new(
            Object::Layer,
            Field::Padding,
            json!(diff_ids.0),
            json!(diff_ids.1),
            format!(
                "all {} entries are identical, but the tar bytes differ outside them (padding or end-of-archive blocks)",
                out.entries
            ),
        ),
    })
}

/// Entries of a layer blob.
fn count_layer(p: &Path) -> Result<u64, VerifyError> {
    let r = crate::layer::open_blob(p).map_err(io_err(p))?;
    tardiff::count_entries(r).map_err(|e| VerifyError::BadOutput {
        path: p.to_path_buf(),
        reason: format!("reading the layer as a tar stream: {e}"),
    })
}

/// `ref -> manifest digest` from an `index.json`.
fn index_refs(index: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        let r = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or_default();
        if let Some(d) = m["digest"].as_str() {
            out.insert(r.to_string(), d.to_string());
        }
    }
    out
}

/// Layer descriptors (digest) and config digest of a manifest.
fn manifest_parts(m: &Value) -> (Vec<String>, Option<String>) {
    let layers = m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["digest"].as_str().map(String::from))
        .collect();
    (layers, m["config"]["digest"].as_str().map(String::from))
}

fn diff_ids_of(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

fn in_image(mut d: Difference, image: &str) -> Difference {
    d.image = Some(image.to_string());
    d
}

/// What a step of a walk returns: the first difference, if any.
type Found = Result<Option<Difference>, VerifyError>;

/// Compare two output directories of `imgforge build`.
pub fn compare_dirs(a: &Path, b: &Path) -> Result<Outcome, VerifyError> {
    let mut walk = DirWalk {
        a,
        b,
        counts: Counts::default(),
        done: BTreeSet::new(),
        seen_layers: BTreeSet::new(),
    };
    let difference = walk.walk()?;
    Ok(Outcome {
        counts: walk.counts,
        difference,
    })
}

/// Two output directories side by side, and what the walk has covered.
struct DirWalk<'a> {
    a: &'a Path,
    b: &'a Path,
    counts: Counts,
    /// Files already compared as part of an image.
    done: BTreeSet<String>,
    /// Layers counted once, however many images share them.
    seen_layers: BTreeSet<String>,
}

/// One image's manifest, its layers, config and the config's diff IDs.
struct ImageDocs {
    manifest: (String, Value),
    layers: Vec<String>,
    config: Option<(String, Value)>,
    diff_ids: Vec<String>,
}

impl DirWalk<'_> {
    fn walk(&mut self) -> Found {
        let files_a = list_files(self.a)?;
        let files_b = list_files(self.b)?;
        // Images, down the tree.
        let ia = read_json(&self.a.join("index.json"))?;
        let ib = read_json(&self.b.join("index.json"))?;
        let (ra, rb) = (index_refs(&ia), index_refs(&ib));
        if ra.keys().ne(rb.keys()) {
            let j = jsondiff::diff(&ia, &ib).expect("different refs, different documents");
            let mut d = json_difference(Object::Index, j, "index.json");
            d.file = Some("index.json".into());
            d.detail = format!("the two builds list different images; {}", d.detail);
            return Ok(Some(d));
        }
        for (image, ma) in &ra {
            self.counts.images += 1;
            let x = image_docs(self.a, ma)?;
            let y = image_docs(self.b, &rb[image])?;
            if let Some(d) = self.image(&x, &y)? {
                return Ok(Some(in_image(d, image)));
            }
        }
        self.other_files(&files_a, &files_b)
    }

    /// An image's layers bottom first, then its config, then its manifest.
    fn image(&mut self, x: &ImageDocs, y: &ImageDocs) -> Found {
        for i in 0..x.layers.len().max(y.layers.len()) {
            if let Some(d) = self.layer(x, y, i)? {
                return Ok(Some(d));
            }
        }
        let config = |d: &ImageDocs| d.config.as_ref().map(|(g, v)| (g.clone(), v.clone()));
        let manifest = |d: &ImageDocs| Some(d.manifest.clone());
        for (obj, da, db) in [
            (Object::Config, config(x), config(y)),
            (Object::Manifest, manifest(x), manifest(y)),
        ] {
            if let Some(d) = self.document(obj, da, db)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Layer `i` of both images.
    fn layer(&mut self, xs: &ImageDocs, ys: &ImageDocs, i: usize) -> Found {
        let (la, lb) = (&xs.layers, &ys.layers);
        let (Some(x), Some(y)) = (la.get(i), lb.get(i)) else {
            let mut d = Difference::new(
                Object::Layer,
                Field::Presence,
                json!(la.get(i)),
                json!(lb.get(i)),
                format!(
                    "the image has {} layer(s) in a and {} in b",
                    la.len(),
                    lb.len()
                ),
            );
            d.layer_index = Some(i);
            return Ok(Some(d));
        };
        let (px, py) = (blob_path(self.a, x), blob_path(self.b, y));
        self.done.insert(format!("blobs/sha256/{}", hex(x)));
        self.done.insert(format!("blobs/sha256/{}", hex(y)));
        if x == y && same_bytes(&px, &py)? {
            if self.seen_layers.insert(x.clone()) {
                self.counts.layers += 1;
                self.counts.files += 1;
                self.counts.bytes += file_size(&py);
                self.counts.layer_entries += count_layer(&py)?;
            }
            return Ok(None);
        }
        let ids = (
            xs.diff_ids.get(i).map(String::as_str),
            ys.diff_ids.get(i).map(String::as_str),
        );
        let mut d = diff_layer_blobs(&px, &py, ids)?;
        d.layer_index = Some(i);
        d.digest_a = Some(x.clone());
        d.digest_b = Some(y.clone());
        d.hint = Some(
            "something that must not matter (thread count, paths, umask, time zone, locale, environment, mirror file order or mtimes, or the clock) reached this layer; a build stage that records the time or randomness is the usual cause".into(),
        );
        Ok(Some(d))
    }

    /// A config or manifest (digest and parsed JSON) of both images.
    fn document(
        &mut self,
        obj: Object,
        da: Option<(String, Value)>,
        db: Option<(String, Value)>,
    ) -> Found {
        for (dg, _) in [&da, &db].into_iter().flatten() {
            self.done.insert(format!("blobs/sha256/{}", hex(dg)));
        }
        let same = match (&da, &db) {
            (Some((x, _)), Some((y, _))) => {
                x == y && same_bytes(&blob_path(self.a, x), &blob_path(self.b, y))?
            }
            (None, None) => true,
            _ => false,
        };
        if same {
            if let Some((x, _)) = &da {
                self.counts.files += 1;
                self.counts.bytes += file_size(&blob_path(self.a, x));
            }
            return Ok(None);
        }
        let what = if obj == Object::Config {
            "config"
        } else {
            "manifest"
        };
        let (ga, va) = da.unzip();
        let (gb, vb) = db.unzip();
        let j = jsondiff::diff(
            va.as_ref().unwrap_or(&Value::Null),
            vb.as_ref().unwrap_or(&Value::Null),
        );
        let mut d = match j {
            Some(j) => json_difference(obj, j, what),
            None => Difference::new(
                obj,
                Field::Content,
                json!(ga),
                json!(gb),
                format!("{what}: same JSON values, different bytes"),
            ),
        };
        d.digest_a = ga;
        d.digest_b = gb;
        Ok(Some(d))
    }

    /// index.json, every other file in path order, the record last.
    fn other_files(&mut self, files_a: &BTreeSet<String>, files_b: &BTreeSet<String>) -> Found {
        let mut order: Vec<&String> = files_a.union(files_b).collect();
        order.sort_by_key(|f| {
            (
                f.as_str() != "index.json",
                f.as_str() == record::FILE_NAME,
                f.as_str(),
            )
        });
        for rel in order {
            if self.done.contains(rel) {
                continue;
            }
            let (pa, pb) = (self.a.join(rel), self.b.join(rel));
            if !(files_a.contains(rel) && files_b.contains(rel)) {
                let (x, y) = (files_a.contains(rel), files_b.contains(rel));
                let mut d = Difference::new(
                    object_of_file(rel),
                    Field::Presence,
                    json!(x.then_some(rel)),
                    json!(y.then_some(rel)),
                    format!("{rel} is only in {}", if x { "a" } else { "b" }),
                );
                d.file = Some(rel.clone());
                return Ok(Some(d));
            }
            if !same_bytes(&pa, &pb)? {
                return Ok(Some(diff_files(&pa, &pb, rel)?));
            }
            self.counts.files += 1;
            self.counts.bytes += file_size(&pb);
        }
        Ok(None)
    }
}

/// Read an image's manifest (by digest) and config in output `dir`.
fn image_docs(dir: &Path, manifest: &str) -> Result<ImageDocs, VerifyError> {
    let m = read_json(&blob_path(dir, manifest))?;
    let (layers, config) = manifest_parts(&m);
    let config = config
        .map(|c| read_json(&blob_path(dir, &c)).map(|v| (c, v)))
        .transpose()?;
    let diff_ids = config
        .as_ref()
        .map(|(_, v)| diff_ids_of(v))
        .unwrap_or_default();
    Ok(ImageDocs {
        manifest: (manifest.to_string(), m),
        layers,
        config,
        diff_ids,
    })
}

/// The hint for a layer or document that changed against a record.
const CHANGED_HINT: &str = "if recipes/imgforge.lock or a recipe changed since the record was written (a pin, a version, a file), this is expected: run `imgforge build` and commit the new imgforge-record.json. If nothing changed, the build is not reproducible; keep the recorded output directory (with blobs/) beside the record to see which file inside the layer differs";

/// The old output directory beside a record, when its blobs are there.
pub fn recorded_dir(record_path: &Path) -> Option<PathBuf> {
    let dir = record_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join("blobs")
        .join("sha256")
        .is_dir()
        .then(|| dir.to_path_buf())
}

/// An old blob or file beside the record, only when its bytes still match
/// the recorded digest.
fn trusted(old_dir: Option<&Path>, rel: &str, digest: &str) -> Option<PathBuf> {
    let p = old_dir?.join(rel);
    (p.is_file() && sha_file(&p).ok().as_deref() == Some(digest)).then_some(p)
}

/// The `created_by` of a layer from the new build's config.
fn created_by(new_dir: &Path, config: &str, i: usize) -> Option<String> {
    let c = read_json(&blob_path(new_dir, config)).ok()?;
    let h: Vec<&Value> = c["history"]
        .as_array()?
        .iter()
        .filter(|h| h["empty_layer"] != json!(true))
        .collect();
    h.get(i)?["created_by"].as_str().map(String::from)
}

/// Compare `old` (a record, with its output directory when still there)
/// with the output of a new build in `new_dir`.
pub fn compare_record(
    old: &Record,
    old_dir: Option<&Path>,
    new_dir: &Path,
) -> Result<Outcome, VerifyError> {
    let new_path = new_dir.join(record::FILE_NAME);
    let new = record::read(&new_path).map_err(|reason| VerifyError::BadOutput {
        path: new_path.clone(),
        reason,
    })?;
    let mut walk = RecordWalk {
        old,
        old_dir,
        new: &new,
        new_dir,
        counts: Counts::default(),
        seen_layers: BTreeSet::new(),
    };
    let difference = walk.walk()?;
    Ok(Outcome {
        counts: walk.counts,
        difference,
    })
}

/// A record and a new output side by side, and what the walk has covered.
struct RecordWalk<'a> {
    old: &'a Record,
    /// The record's output directory, when its blobs are still beside it.
    old_dir: Option<&'a Path>,
    new: &'a Record,
    new_dir: &'a Path,
    counts: Counts,
    seen_layers: BTreeSet<String>,
}

impl RecordWalk<'_> {
    fn walk(&mut self) -> Found {
        let (old, new) = (self.old, self.new);
        if old.source_date_epoch != new.source_date_epoch {
            let mut d = Difference::new(
                Object::Record,
                Field::SourceDateEpoch,
                json!(old.source_date_epoch),
                json!(new.source_date_epoch),
                "SOURCE_DATE_EPOCH differs: every timestamp changes with it".into(),
            );
            d.hint = Some("set the same source-date-epoch in base/base.toml, or export the SOURCE_DATE_EPOCH the record was built with".into());
            return Ok(Some(d));
        }
        let refs: BTreeSet<&String> = old.images.keys().chain(new.images.keys()).collect();
        for r in &refs {
            let (in_old, in_new) = (old.images.contains_key(*r), new.images.contains_key(*r));
            if !(in_old && in_new) {
                let mut d = Difference::new(
                    Object::Image,
                    Field::Presence,
                    json!(in_old.then_some(r)),
                    json!(in_new.then_some(r)),
                    format!(
                        "image {r} is only in the {}",
                        if in_old { "record" } else { "new build" }
                    ),
                );
                d.hint = Some("an image was added, removed or renamed (name or tag) since the record was written; commit the new record if that was intended".into());
                return Ok(Some(in_image(d, r)));
            }
        }
        for r in refs {
            self.counts.images += 1;
            if let Some(d) = self.image(r)? {
                return Ok(Some(in_image(d, r)));
            }
        }
        self.files()
    }

    /// Image `r`'s layers bottom first, then its config, then its manifest.
    fn image(&mut self, r: &str) -> Found {
        let (o, n) = (&self.old.images[r], &self.new.images[r]);
        for i in 0..o.layers.len().max(n.layers.len()) {
            let (Some(x), Some(y)) = (o.layers.get(i), n.layers.get(i)) else {
                let mut d = Difference::new(
                    Object::Layer,
                    Field::Presence,
                    json!(o.layers.get(i).map(|l| &l.digest)),
                    json!(n.layers.get(i).map(|l| &l.digest)),
                    format!(
                        "the image has {} layer(s) in the record and {} in the new build",
                        o.layers.len(),
                        n.layers.len()
                    ),
                );
                d.layer_index = Some(i);
                d.hint = Some(CHANGED_HINT.into());
                return Ok(Some(d));
            };
            if let Some(d) = self.layer(r, i, x, y)? {
                return Ok(Some(d));
            }
        }
        for (obj, what, x, y) in [
            (Object::Config, "config", &o.config, &n.config),
            (Object::Manifest, "manifest", &o.manifest, &n.manifest),
        ] {
            if let Some(d) = self.document(r, obj, what, x, y)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Layer `i` of image `r`: `x` recorded, `y` built now.
    fn layer(
        &mut self,
        r: &str,
        i: usize,
        x: &record::RecordLayer,
        y: &record::RecordLayer,
    ) -> Found {
        let new_blob = blob_path(self.new_dir, &y.digest);
        if x == y {
            if self.seen_layers.insert(y.digest.clone()) {
                self.counts.layers += 1;
                self.counts.files += 1;
                self.counts.bytes += y.size;
                self.counts.layer_entries += count_layer(&new_blob)?;
            }
            return Ok(None);
        }
        let rel = format!("blobs/sha256/{}", hex(&x.digest));
        let mut d = match trusted(self.old_dir, &rel, &x.digest) {
            Some(old_blob) => {
                let ids = (Some(x.diff_id.as_str()), Some(y.diff_id.as_str()));
                let mut d = diff_layer_blobs(&old_blob, &new_blob, ids)?;
                d.hint = Some(CHANGED_HINT.into());
                d
            }
            None => {
                let mut d = Difference::new(
                    Object::Layer,
                    Field::Digest,
                    json!(x.diff_id),
                    json!(y.diff_id),
                    format!(
                        "layer {i} of {r} changed: digest {} in the record, {} now (diff_id {} -> {}, size {} -> {}); the record's blobs are not beside it, so only digests can be compared",
                        x.digest, y.digest, x.diff_id, y.diff_id, x.size, y.size
                    ),
                );
                let mut hint = CHANGED_HINT.to_string();
                if let Some(c) = created_by(self.new_dir, &self.new.images[r].config, i) {
                    hint.push_str(&format!(". The new layer was made by: {c}"));
                }
                d.hint = Some(hint);
                d
            }
        };
        d.layer_index = Some(i);
        d.digest_a = Some(x.digest.clone());
        d.digest_b = Some(y.digest.clone());
        Ok(Some(d))
    }

    /// The config or manifest of image `r`: digest `x` recorded, `y` now.
    fn document(&mut self, r: &str, obj: Object, what: &str, x: &str, y: &str) -> Found {
        if x == y {
            self.counts.files += 1;
            self.counts.bytes += file_size(&blob_path(self.new_dir, y));
            return Ok(None);
        }
        let rel = format!("blobs/sha256/{}", hex(x));
        let new_doc = read_json(&blob_path(self.new_dir, y))?;
        let mut d = match trusted(self.old_dir, &rel, x) {
            Some(p) => match jsondiff::diff(&read_json(&p)?, &new_doc) {
                Some(j) => json_difference(obj, j, what),
                None => Difference::new(
                    obj,
                    Field::Content,
                    json!(x),
                    json!(y),
                    format!("{what}: same JSON values, different bytes"),
                ),
            },
            None => Difference::new(
                obj,
                Field::Digest,
                json!(x),
                json!(y),
                format!(
                    "the {what} of {r} changed (its layers did not); the record's blobs are not beside it, so only digests can be compared"
                ),
            ),
        };
        d.digest_a = Some(x.to_string());
        d.digest_b = Some(y.to_string());
        d.hint = Some(CHANGED_HINT.into());
        Ok(Some(d))
    }

    /// Every other file of the record, index.json first.
    fn files(&mut self) -> Found {
        let (old, new) = (self.old, self.new);
        let mut names: Vec<&String> = old.files.keys().chain(new.files.keys()).collect();
        names.sort_by_key(|f| (f.as_str() != "index.json", f.as_str()));
        names.dedup();
        for rel in names {
            let (x, y) = (old.files.get(rel), new.files.get(rel));
            let (Some(x), Some(y)) = (x, y) else {
                let mut d = Difference::new(
                    object_of_file(rel),
                    Field::Presence,
                    json!(x.map(|_| rel)),
                    json!(y.map(|_| rel)),
                    format!(
                        "{rel} is only in the {}",
                        if x.is_some() { "record" } else { "new build" }
                    ),
                );
                d.file = Some(rel.clone());
                d.hint = Some(CHANGED_HINT.into());
                return Ok(Some(d));
            };
            if x == y {
                self.counts.files += 1;
                self.counts.bytes += file_size(&self.new_dir.join(rel));
                continue;
            }
            let mut d = self.changed_file(rel, x, y)?;
            d.hint = Some(CHANGED_HINT.into());
            return Ok(Some(d));
        }
        Ok(None)
    }

    /// File `rel` whose digest changed from `x` to `y`.
    fn changed_file(&self, rel: &str, x: &str, y: &str) -> Result<Difference, VerifyError> {
        if let Some(p) = trusted(self.old_dir, rel, x) {
            return diff_files(&p, &self.new_dir.join(rel), rel);
        }
        let mut d = Difference::new(
            object_of_file(rel),
            Field::Digest,
            json!(x),
            json!(y),
            format!(
                "{rel} changed; the recorded output is not beside the record, so only digests can be compared"
            ),
        );
        d.file = Some(rel.to_string());
        d.digest_a = Some(x.to_string());
        d.digest_b = Some(y.to_string());
        Ok(d)
    }
}
