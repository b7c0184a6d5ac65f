//! SBOMs (SPDX 2.3, CycloneDX 1.6) and a license inventory for every shipped
//! Debian package, fit for legal review.
//!
//! [`write_all`] is the entry point of the build pipeline. For every image it
//! writes, under the OCI output directory:
//!
//! ```text
//! sbom/<image>.spdx.json        SPDX 2.3: image package DESCRIBES-d, CONTAINS
//!                               the operating system (Debian point release),
//!                               each shipped .deb and artifact; DEPENDS_ON
//!                               from Depends
//! sbom/<image>.cdx.json         CycloneDX 1.6: metadata.component = the image;
//!                               an operating-system component; shipped .debs
//! sbom/<image>.build.spdx.json  the build stage's packages (only for images
//! sbom/<image>.build.cdx.json   with a build stage): never in the runtime SBOM
//! legal/<image>.{md,html,csv}   license inventory of the image
//! legal/<image>.licenses.json   the same, with per-stanza evidence
//! legal/all.{md,html,csv}       the same over the whole build
//! legal/source-offer.md         sources whose licenses require a source offer
//! legal/attribution/<pkg>/copyright           verbatim copyright files
//! legal/attribution/common-licenses/<Name>    referenced common-licenses texts
//! ```
//!
//! Everything is deterministic: timestamps come from `SOURCE_DATE_EPOCH`,
//! document namespace and serial number are derived from a hash of the
//! content, lists are sorted and JSON goes through [`crate::json`].
//! License detection ([`license`]) runs per package in parallel (rayon,
//! `jobs` threads).

pub mod applies;
pub mod curated;
pub mod cyclonedx;
pub mod dep5;
pub mod evaluate;
pub mod html;
pub mod identify;
pub mod license;
pub mod listed;
mod memo;
pub mod names;
pub mod prose;
pub mod report;
pub mod scan;
pub mod spdx;
pub mod terms;
pub mod text;

use crate::deb::{DataFile, Limits};
use license::{LicenseError, LicenseFinding, ReviewFlag};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A Debian binary package in an image (or a build stage).
#[derive(Debug, Clone)]
pub struct SbomPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub architecture: String,
    /// Source package name.
    pub source: String,
    /// Source package version.
    pub source_version: String,
    /// sha256 of the `.deb`.
    pub sha256: String,
    /// Size of the `.deb`.
    pub size: u64,
    /// File name of the `.deb` in the archive (`pool/...`).
    pub filename: String,
    /// Where the `.deb` is on disk.
    pub deb_path: PathBuf,
    /// Its control information.
    pub control: crate::deb::ControlInfo,
}

/// A file copied into an image from a build stage.
#[derive(Debug, Clone)]
pub struct SbomFile {
    /// Path in the image, no leading slash.
    pub path: String,
    /// sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// One image of the build.
#[derive(Debug, Clone)]
pub struct SbomImage {
    /// Image name (may contain `/`).
    pub name: String,
    /// Tag.
    pub tag: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config.
    pub config_digest: String,
    /// Shipped packages (base + image).
    pub packages: Vec<SbomPackage>,
    /// Build-stage packages (not shipped).
    pub build_packages: Vec<SbomPackage>,
    /// Build-stage artifacts copied into the image.
    pub artifacts: Vec<SbomFile>,
}

/// Options of [`write_all`].
#[derive(Debug, Clone)]
pub struct SbomOptions {
    /// The OCI output (staging) directory; files go under `sbom/` and `legal/`.
    pub out_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH`, for timestamps.
    pub source_date_epoch: i64,
    /// Distro qualifier of purls (`debian-12`).
    pub distro: String,
    /// imgforge version, recorded as the creating tool.
    pub tool_version: String,
    /// The images.
    pub images: Vec<SbomImage>,
    /// Package name → `.deb`, for following symlinked doc directories and
    /// for base-files' common-licenses texts.
    pub available: BTreeMap<String, PathBuf>,
    /// Parallel jobs for license detection.
    pub jobs: usize,
    /// Where license findings are remembered between builds (by package
    /// sha256 and everything else detection reads); `None`: not kept.
    pub finding_cache: Option<PathBuf>,
    /// Caps on reading a package: the build's own (`--max-package-entries`),
    /// since the license scan holds every path of a package.
    pub limits: Limits,
}

/// What [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomSummary {
    /// Files written, relative to `out_dir`, sorted.
    pub files: Vec<PathBuf>,
    /// Distinct shipped packages (name + version + architecture).
    pub packages: usize,
    /// How many of those carry review flags.
    pub needs_review: usize,
}

/// Errors of SBOM generation.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// Writing an output file failed.
    #[error(
        "cannot write {path}: {source}\nhelp: check that the output directory is writable and the disk is not full"
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A package's copyright file could not be read.
    #[error(
        "license detection failed for package {package}: {source}\nhelp: the .deb may be corrupt; delete it from the cache and fetch it again"
    )]
    License {
        /// The package.
        package: String,
        /// Why.
        #[source]
        source: LicenseError,
    },
    /// base-files could not be read for its common-licenses texts.
    #[error(
        "cannot read /usr/share/common-licenses from {path}: {source}\nhelp: the base-files .deb may be corrupt; fetch it again"
    )]
    CommonLicenses {
        /// The base-files package.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::deb::DebError,
    },
    /// Two images map to the same SBOM file name.
    #[error(
        "images {first:?} and {second:?} would both write sbom/{file}.*\nhelp: rename one of the images"
    )]
    NameClash {
        /// One image.
        first: String,
        /// The other.
        second: String,
        /// The clashing file stem.
        file: String,
    },
    /// base-files' `/etc/debian_version` could not be read.
    #[error(transparent)]
    Release(#[from] crate::release::ReleaseError),
    /// The thread pool could not be created.
    #[error("cannot start {jobs} license-detection threads: {reason}\nhelp: lower --jobs")]
    Threads {
        /// Requested jobs.
        jobs: usize,
        /// Why.
        reason: String,
    },
}

// ---------------------------------------------------------------------------
// Small shared helpers

/// Percent-encode a purl component (version or name): everything but
/// unreserved characters is encoded (`+` → `%2B`, `:` → `%3A`).
pub fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a Debian version or qualifier value in a purl: as
/// [`purl_encode`], but `:` (an epoch) stays, as the purl specification
/// allows and syft writes (`1:1.2.13.dfsg-1`).
pub fn purl_encode_version(s: &str) -> String {
    purl_encode(s).replace("%3A", ":")
}

/// purl of a binary package, without the source qualifier.
pub fn purl(name: &str, version: &str, arch: &str, distro: &str) -> String {
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={}",
        purl_encode(name),
        purl_encode_version(version),
        purl_encode(arch),
        purl_encode(distro)
    )
}

/// purl of a binary package as syft 1.18 writes it for Debian: the
/// qualifiers in key order, `upstream=<source>` when the source package has
/// another name (libssl3 → `openssl`), `upstream=<source>@<version>` when
/// the source version differs (libselinux1 3.4-1+b6 →
/// `libselinux%403.4-1`; libbpf1 1:1.1.2-0+deb12u1 → `libbpf%401.1.2-0%2Bdeb12u1`).
pub fn deb_purl(p: &SbomPackage, distro: &str) -> String {
    let base = purl(&p.name, &p.version, &p.architecture, distro);
    format!(
        "{base}{}",
        upstream(&p.name, &p.version, &p.source, &p.source_version)
    )
}

/// `&upstream=...` of [`deb_purl`], or nothing.
fn upstream(name: &str, version: &str, source: &str, source_version: &str) -> String {
    if source == name && source_version == version {
        return String::new();
    }
    let upstream = if source_version == version {
        source.to_string()
    } else {
        format!("{source}@{source_version}")
    };
    format!("&upstream={}", purl_encode_version(&upstream))
}

/// Which SBOM of an image a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// What ships: base and image packages, build artifacts.
    Runtime,
    /// The build stage's packages (used to build artifacts, never shipped).
    Build,
}

/// What one document is about, beyond the image itself.
#[derive(Debug, Clone)]
pub struct DocContext {
    /// Runtime or build SBOM.
    pub part: Part,
    /// The Debian release shipped (base-files' `/etc/debian_version`), if
    /// the image has base-files.
    pub release: Option<crate::release::DebianRelease>,
    /// The purl `distro` qualifier (`debian-12`).
    pub distro: String,
}

impl DocContext {
    /// The packages the document lists.
    pub fn packages<'a>(&self, img: &'a SbomImage) -> &'a [SbomPackage] {
        match self.part {
            Part::Runtime => &img.packages,
            Part::Build => &img.build_packages,
        }
    }
}

/// The release shipped by `img` (from its base-files package) and the purl
/// distro qualifier (`debian-<major>`, else the configured one).
fn release_of(img: &SbomImage, configured: &str) -> Result<DocContext, SbomError> {
    let release = match img.packages.iter().find(|p| p.name == "base-files") {
        Some(bf) => Some(crate::release::read_release(&bf.deb_path, &bf.version)?),
        None => None,
    };
    let distro = release
        .as_ref()
        .and_then(|r| r.version.split('.').next())
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        .map_or_else(|| configured.to_string(), |m| format!("debian-{m}"));
    Ok(DocContext {
        part: Part::Runtime,
        release,
        distro,
    })
}

/// RFC 3339 UTC timestamp for a Unix time, without a clock.
pub use crate::image::rfc3339;

/// A UUID (version 5 layout, variant RFC 4122) from the sha256 of `bytes`.
pub fn uuid_from(bytes: &[u8]) -> String {
    let h = crate::digest::sha256_hex(bytes);
    let mut b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// File stem for an image name (`/` and other unsafe characters → `_`).
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() { "image".into() } else { s }
}

/// Maintainer field split into (name, email).
pub fn maintainer(pkg: &SbomPackage) -> Option<(String, Option<String>)> {
    let m = pkg.control.get("Maintainer")?.trim();
    if m.is_empty() {
        return None;
    }
    match m.split_once('<') {
        Some((n, rest)) => Some((
            n.trim().to_string(),
            rest.split('>')
                .next()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty()),
        )),
        None => Some((m.to_string(), None)),
    }
}

/// Names of packages this one depends on (first alternative of each
/// `Depends`/`Pre-Depends` entry that is in `present`).
pub fn depends_on(pkg: &SbomPackage, present: &BTreeSet<String>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for field in ["Pre-Depends", "Depends"] {
        let Some(v) = pkg.control.get(field) else {
            continue;
        };
        for dep in v.split(',') {
            for alt in dep.split('|') {
                let name = alt
                    .split(['(', '[', '<'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim();
                if present.contains(name) && name != pkg.name {
                    out.insert(name.to_string());
                    break;
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Key of a package for deduplication.
pub(crate) fn key(p: &SbomPackage) -> (String, String, String) {
    (p.name.clone(), p.version.clone(), p.architecture.clone())
}

/// Findings of every package, by key.
pub type Findings = BTreeMap<PkgKey, LicenseFinding>;

/// (name, version, architecture) of a package.
pub type PkgKey = (String, String, String);

fn write_file(
    out: &Path,
    rel: &Path,
    bytes: &[u8],
    files: &mut Vec<PathBuf>,
) -> Result<(), SbomError> {
    let path = out.join(rel);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|source| SbomError::Write {
            path: p.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&path, bytes).map_err(|source| SbomError::Write { path, source })?;
    files.push(rel.to_path_buf());
    Ok(())
}

/// Texts of `/usr/share/common-licenses/*` from base-files, symlinks resolved.
fn common_license_texts(
    available: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, Vec<u8>>, SbomError> {
    let Some(deb) = available.get("base-files") else {
        return Ok(BTreeMap::new());
    };
    let prefix = "usr/share/common-licenses/";
    let found =
        crate::deb::read_data_files(deb, &Limits::default(), &|p| p.starts_with(prefix), 4 << 20)
            .map_err(|source| SbomError::CommonLicenses {
            path: deb.clone(),
            source,
        })?;
    let mut files = BTreeMap::new();
    let mut links = BTreeMap::new();
    for (p, f) in found {
        let Some(name) = p.strip_prefix(prefix).filter(|n| !n.contains('/')) else {
            continue;
        };
        match f {
            DataFile::File(b) => {
                files.insert(name.to_string(), b);
            }
            DataFile::Symlink(t) => {
                links.insert(name.to_string(), t);
            }
        }
    }
    for (name, target) in links {
        let t = target.rsplit('/').next().unwrap_or("").to_string();
        if let Some(b) = files.get(&t).cloned() {
            files.insert(name, b);
        }
    }
    Ok(files)
}

/// Where each shipped package's copyright file goes, relative to `legal/`
/// (`attribution/<package>/copyright`, with version and architecture when
/// two versions of a package ship).
fn attribution_dirs(shipped: &BTreeSet<PkgKey>, findings: &Findings) -> report::Attribution {
    let mut used: BTreeMap<String, PkgKey> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for k in shipped {
        if findings
            .get(k)
            .and_then(|f| f.copyright_text.as_ref())
            .is_none()
        {
            continue;
        }
        let mut dir = safe_name(&k.0);
        if used.get(&dir).is_some_and(|other| other != k) {
            dir = safe_name(&format!("{}_{}_{}", k.0, k.1, k.2));
        }
        used.insert(dir.clone(), k.clone());
        out.insert(k.clone(), format!("attribution/{dir}/copyright"));
    }
    out
}

/// Write the SPDX and CycloneDX documents of one image: `sbom/<stem>.*`
/// for what ships and, when the image has a build stage,
/// `sbom/<stem>.build.*` for the build stage's packages.
fn write_documents(
    img: &SbomImage,
    stem: &str,
    opts: &SbomOptions,
    findings: &Findings,
    files: &mut Vec<PathBuf>,
) -> Result<(), SbomError> {
    let runtime = release_of(img, &opts.distro)?;
    let mut parts = vec![(runtime.clone(), stem.to_string())];
    if !img.build_packages.is_empty() {
        let build = DocContext {
            part: Part::Build,
            ..runtime
        };
        parts.push((build, format!("{stem}.build")));
    }
    for (ctx, name) in parts {
        let spdx_doc = spdx::document(img, opts, findings, &ctx);
        write_file(
            &opts.out_dir,
            &Path::new("sbom").join(format!("{name}.spdx.json")),
            &crate::json::to_canonical_pretty(&spdx_doc),
            files,
        )?;
        let cdx = cyclonedx::document(img, opts, findings, &ctx);
        write_file(
            &opts.out_dir,
            &Path::new("sbom").join(format!("{name}.cdx.json")),
            &crate::json::to_canonical_pretty(&cdx),
            files,
        )?;
    }
    Ok(())
}

/// The license finding of every package of `opts.images` (shipped or
/// build-only), detected in parallel or taken from the finding memo. A
/// build may call this early, beside its other work, to fill the memo.
pub fn findings(opts: &SbomOptions) -> Result<Findings, SbomError> {
    // Unique packages over all images, shipped or build-only.
    let mut unique: BTreeMap<(String, String, String), &SbomPackage> = BTreeMap::new();
    for img in &opts.images {
        for p in img.packages.iter().chain(&img.build_packages) {
            unique.entry(key(p)).or_insert(p);
        }
    }
    let jobs = opts.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| SbomError::Threads {
            jobs,
            reason: e.to_string(),
        })?;
    // Binary packages of each source in the build: a program linking a
    // sibling's shared library does not contain the library's code.
    let mut by_source: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for p in unique.values() {
        by_source
            .entry(p.source.as_str())
            .or_default()
            .insert(p.name.clone());
    }
    let list: Vec<(&(String, String, String), &&SbomPackage)> = unique.iter().collect();
    let limits = &opts.limits;
    let results: Vec<Result<(PkgKey, LicenseFinding), SbomError>> = pool.install(|| {
        list.par_iter()
            .map(|(k, p)| {
                let siblings = by_source
                    .get(p.source.as_str())
                    .cloned()
                    .unwrap_or_default();
                let detect = || {
                    license::detect_with(
                        &p.name,
                        &p.source,
                        p.control.get("Section"),
                        &p.deb_path,
                        &opts.available,
                        limits,
                        &siblings,
                    )
                };
                memo::finding(opts, p, &siblings, detect)
                    .map(|f| ((*k).clone(), f))
                    .map_err(|source| SbomError::License {
                        package: p.name.clone(),
                        source,
                    })
            })
            .collect()
    });
    let mut findings: Findings = BTreeMap::new();
    for r in results {
        let (k, f) = r?;
        findings.insert(k, f);
    }

    Ok(findings)
}

/// Write SBOMs and legal reports for every image of the build.
/// The common-licenses texts the shipped packages' copyright files refer
/// to; a reference to a text the build lacks is flagged for review.
fn common_licenses_referenced(
    shipped: &BTreeSet<(String, String, String)>,
    findings: &mut Findings,
    texts: &BTreeMap<String, Vec<u8>>,
) -> BTreeSet<String> {
    let mut referenced = BTreeSet::new();
    for k in shipped {
        if let Some(f) = findings.get_mut(k) {
            for n in f.common_licenses_referenced.clone() {
                if texts.contains_key(&n) {
                    referenced.insert(n);
                } else {
                    f.flags.push(ReviewFlag::CommonLicenseMissing(n));
                }
            }
            f.flags.sort();
            f.flags.dedup();
        }
    }
    referenced
}

/// `legal/<stem>.{md,html,csv,licenses.json}`: one report in four forms.
fn write_reports(
    out: &Path,
    stem: &str,
    title: &str,
    rows: &[report::Row],
    files: &mut Vec<PathBuf>,
) -> Result<(), SbomError> {
    let legal = Path::new("legal");
    let annex = crate::json::to_canonical_pretty(&report::annex(title, rows));
    let forms: [(&str, Vec<u8>); 4] = [
        ("md", report::markdown(title, rows).into_bytes()),
        ("html", html::html(title, rows).into_bytes()),
        ("csv", report::csv(rows).into_bytes()),
        ("licenses.json", annex),
    ];
    for (ext, bytes) in forms {
        write_file(out, &legal.join(format!("{stem}.{ext}")), &bytes, files)?;
    }
    Ok(())
}

pub fn write_all(opts: &SbomOptions) -> Result<SbomSummary, SbomError> {
    let mut findings = self::findings(opts)?;
    // Common-licenses texts referenced by shipped packages.
    let texts = common_license_texts(&opts.available)?;
    let shipped_keys: BTreeSet<(String, String, String)> = opts
        .images
        .iter()
        .flat_map(|i| i.packages.iter().map(key))
        .collect();
    let referenced = common_licenses_referenced(&shipped_keys, &mut findings, &texts);

    let attribution = attribution_dirs(&shipped_keys, &findings);
    let out = &opts.out_dir;
    let mut files = Vec::new();
    let mut stems: BTreeMap<String, String> = BTreeMap::new();
    for img in &opts.images {
        let stem = safe_name(&img.name);
        if let Some(prev) = stems.insert(stem.clone(), img.name.clone()) {
            if prev != img.name || opts.images.iter().filter(|i| i.name == img.name).count() > 1 {
                return Err(SbomError::NameClash {
                    first: prev,
                    second: img.name.clone(),
                    file: stem,
                });
            }
        }
        write_documents(img, &stem, opts, &findings, &mut files)?;
        let rows = report::rows(std::slice::from_ref(img), &findings, &attribution);
        let title = format!("{}:{}", img.name, img.tag);
        write_reports(out, &stem, &title, &rows, &mut files)?;
    }
    let rows = report::rows(&opts.images, &findings, &attribution);
    write_reports(out, "all", "all images of the build", &rows, &mut files)?;
    write_file(
        out,
        Path::new("legal/source-offer.md"),
        report::source_offer(&rows).as_bytes(),
        &mut files,
    )?;

    // Attribution: verbatim copyright files of shipped packages.
    for (k, rel) in &attribution {
        if let Some(text) = findings.get(k).and_then(|f| f.copyright_text.as_ref()) {
            write_file(out, &Path::new("legal").join(rel), text, &mut files)?;
        }
    }
    for n in &referenced {
        if let Some(b) = texts.get(n) {
            write_file(
                out,
                &Path::new("legal/attribution/common-licenses").join(n),
                b,
                &mut files,
            )?;
        }
    }
    files.sort();
    files.dedup();
    let needs_review = shipped_keys
        .iter()
        .filter(|k| findings.get(*k).is_some_and(|f| !f.flags.is_empty()))
        .count();
    Ok(SbomSummary {
        files,
        packages: shipped_keys.len(),
        needs_review,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_uuids() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let u = uuid_from(b"x");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "5");
    }

    #[test]
    fn purls() {
        assert_eq!(
            purl("zlib1g", "1:1.2.13.dfsg-1", "amd64", "debian-12"),
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl("libstdc++6", "1+b1", "amd64", "d"),
            "pkg:deb/debian/libstdc%2B%2B6@1%2Bb1?arch=amd64&distro=d"
        );
        assert_eq!(safe_name("library/nginx"), "library_nginx");
    }

    /// The purls syft 1.18 wrote for these packages of the example images.
    #[test]
    fn deb_purls_are_syfts() {
        let cases = [
            (
                ("libssl3", "3.0.22-1~deb12u2", "openssl", "3.0.22-1~deb12u2"),
                "pkg:deb/debian/libssl3@3.0.22-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl",
            ),
            (
                ("libselinux1", "3.4-1+b6", "libselinux", "3.4-1"),
                "pkg:deb/debian/libselinux1@3.4-1%2Bb6?arch=amd64&distro=debian-12&upstream=libselinux%403.4-1",
            ),
            (
                (
                    "libcap2",
                    "1:2.66-4+deb12u3+b1",
                    "libcap2",
                    "1:2.66-4+deb12u3",
                ),
                "pkg:deb/debian/libcap2@1:2.66-4%2Bdeb12u3%2Bb1?arch=amd64&distro=debian-12&upstream=libcap2%401:2.66-4%2Bdeb12u3",
            ),
            (
                (
                    "libnginx-mod-http-echo",
                    "1:0.63-4",
                    "libnginx-mod-http-echo",
                    "1:0.63-4",
                ),
                "pkg:deb/debian/libnginx-mod-http-echo@1:0.63-4?arch=amd64&distro=debian-12",
            ),
        ];
        for ((name, version, source, source_version), want) in cases {
            let got = format!(
                "{}{}",
                purl(name, version, "amd64", "debian-12"),
                upstream(name, version, source, source_version)
            );
            assert_eq!(got, want);
        }
    }
}
