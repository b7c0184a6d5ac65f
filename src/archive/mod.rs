//! imgforge's own Debian archive client.
//!
//! * [`sources`]: which archives (base recipe `[[source.archive]]`, or the
//!   host's apt configuration);
//! * [`release`]: `InRelease` (or `Release` + `Release.gpg`) checked against
//!   an OpenPGP keyring, and the SHA256 list it signs;
//! * [`fetch`]: HTTP(S) and `file://` downloads, hashed as they stream,
//!   staged and renamed into place only once verified;
//! * [`store`]: the content-addressed caches (index files, `.deb`s and
//!   source package files by sha256), found again with no index at all;
//! * [`srcpkg`]: source packages (signed `Sources` index, `.dsc`, tarballs)
//!   for `imgforge sources`.
//!
//! Entry points: [`load`] (sources -> records in an [`Index`]) and
//! [`fetch_deb`] (one verified `.deb` into the store).
//!
//! Trust chain: keyring -> signed Release -> SHA256 of each `Packages` file
//! -> SHA256 of each `.deb` (then the lock's sha256 on every use).

pub mod changelog;
pub mod fetch;
pub mod release;
pub mod sources;
pub mod srcpkg;
pub mod store;

use crate::pkgindex::{self as index, Index, Origin};
use sources::ArchiveSource;
use std::path::{Path, PathBuf};

/// Errors of the archive client. Each names the file (URL or path) and the
/// check that failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}\nhelp: check permissions and free space")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: {reason}\nhelp: fix the apt source entry, or list the archives in base/base.toml as [[source.archive]]"
    )]
    BadSources {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "cannot download {url}: {reason}\nhelp: check the network and the archive URI (or use --mirror DIR offline)"
    )]
    Http { url: String, reason: String },
    #[error(
        "{url}: signature check failed: {reason}\nhelp: the archive's keyring ({keys}) must hold the key that signs it; set `keyring` for this archive in base/base.toml, or `trusted = true` only if you trust the transport"
    )]
    Signature {
        url: String,
        keys: String,
        reason: String,
    },
    #[error(
        "{url}: no InRelease and no Release + Release.gpg: the archive is not signed\nhelp: refusing an unsigned archive; set `trusted = true` for it in base/base.toml only if you trust the transport"
    )]
    Unsigned { url: String },
    #[error(
        "cannot read keyring {path}: {reason}\nhelp: point `keyring` (or Signed-By) at an OpenPGP public keyring, binary or armored"
    )]
    Keyring { path: String, reason: String },
    #[error(
        "{url}: sha256 check failed against {against}\n  expected sha256 {expected}\n  actual   sha256 {actual}\nhelp: the file changed after it was signed (a broken or hostile mirror or proxy); nothing was written; try again later or another mirror"
    )]
    Hash {
        url: String,
        against: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{url}: signed Release lists no {what}\nhelp: check the suite and component names of this archive"
    )]
    NotListed { url: String, what: String },
    #[error(
        "no package source: no --mirror, no [[source.archive]] in the base recipe, and no apt configuration on this host ({root}/etc/apt/sources.list[.d])\nhelp: add to base/base.toml, for example:\n  [[source.archive]]\n  uri = \"http://<your Debian mirror>/debian\"\n  suites = [\"bookworm\", \"bookworm-updates\"]\n  components = [\"main\"]\n  keyring = \"keys/debian-archive-keyring.gpg\"\nor pass --mirror DIR (a flat repository or a directory of .deb files)"
    )]
    NoSources { root: String },
    #[error(transparent)]
    Index(#[from] index::IndexError),
}

impl ArchiveError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to read archives.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// The cache root (`~/.cache/imgforge`).
    pub cache: PathBuf,
    /// Debian architecture.
    pub arch: String,
    /// Download `InRelease` and indexes again (`lock`, `update`); otherwise
    /// the last verified copies in the cache are used when present.
    pub refresh: bool,
}

/// What [`load`] read.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// `uri suite`, one per suite read.
    pub suites: Vec<String>,
    /// Records added.
    pub records: usize,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// `name=version` -> the `uri suite` that first offered it.
    pub suite_of: std::collections::BTreeMap<String, String>,
}

/// Note which suite offers each `name=version` of a Packages text.
fn note_suites(text: &str, label: &str, map: &mut std::collections::BTreeMap<String, String>) {
    let mut name = "";
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("Package:") {
            name = n.trim();
        } else if let Some(v) = line.strip_prefix("Version:") {
            map.entry(format!("{name}={}", v.trim()))
                .or_insert_with(|| label.to_string());
        }
    }
}

/// Read every suite and component of `sources` into `idx` (earlier sources
/// win for the same name and version). Records point at their archive
/// through [`Origin::Url`].
pub fn load(
    sources: &[ArchiveSource],
    opts: &ArchiveOptions,
    idx: &mut Index,
) -> Result<LoadReport, ArchiveError> {
    let client = fetch::Client::new();
    let mut report = LoadReport::default();
    for src in sources {
        for suite in &src.suites {
            let rel = release::get_release(&client, src, suite, opts, &mut report.downloaded)?;
            for comp in &src.components {
                let path =
                    release::packages_file(&client, comp, &rel, opts, &mut report.downloaded)?;
                let label = format!("{} {suite}", src.uri);
                let suite_of = &mut report.suite_of;
                report.records += index::add_packages_reader(
                    idx,
                    store::open_index(&path)?,
                    &path,
                    Origin::Url(src.uri.clone()),
                    |stanza| note_suites(stanza, &label, suite_of),
                )?;
            }
            release::commit(&rel)?;
            report.suites.push(format!("{} {suite}", src.uri));
        }
    }
    Ok(report)
}

/// The verified `.deb` with `sha256` from `base/filename`, in the store
/// (downloaded only when the store does not have it).
pub fn fetch_deb(
    base: &str,
    filename: &str,
    sha256: &str,
    cache: &Path,
) -> Result<(PathBuf, u64), ArchiveError> {
    let st = store::Store::new(cache);
    if let Some(p) = st.deb(sha256) {
        return Ok((p, 0));
    }
    let client = fetch::Client::new();
    let url = format!("{base}/{filename}");
    let n = client
        .download_verified(
            &url,
            &st.deb_path(sha256),
            sha256,
            "the signed Packages index",
        )?
        .ok_or_else(|| ArchiveError::Http {
            url: url.clone(),
            reason: "not found (HTTP 404): the archive no longer has it".into(),
        })?;
    Ok((st.deb_path(sha256), n))
}
