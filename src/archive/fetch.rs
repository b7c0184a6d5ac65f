//! Downloads over HTTP(S) (`ureq` with rustls) and `file://`.
//!
//! [`Client::download_verified`] streams into a temporary file beside the
//! destination while hashing, and renames it into place only when the sha256
//! matches: a bad file is never written where a later run would find it.

use super::ArchiveError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An HTTP agent (connections reused) that also reads `file://` URLs.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

fn http_err(url: &str, reason: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Http {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

impl Client {
    pub fn new() -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .timeout_recv_body(Some(std::time::Duration::from_secs(300)))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// A reader over the body of `url`; `None` when it does not exist
    /// (HTTP 404/410, or no such file).
    fn open(&self, url: &str) -> Result<Option<Box<dyn Read + Send>>, ArchiveError> {
        if let Some(path) = url.strip_prefix("file://") {
            return match std::fs::File::open(path) {
                Ok(f) => Ok(Some(Box::new(f))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(http_err(url, e)),
            };
        }
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(http_err(
                url,
                "unsupported URI scheme (http://, https:// and file:// are)",
            ));
        }
        match self.agent.get(url).call() {
            Ok(resp) => Ok(Some(Box::new(resp.into_body().into_reader()))),
            Err(ureq::Error::StatusCode(404 | 410)) => Ok(None),
            Err(e) => Err(http_err(url, e)),
        }
    }

    /// The whole body of a small file (a Release), or `None` when absent.
    pub fn get(&self, url: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(mut r) = self.open(url)? else {
            return Ok(None);
        };
        let mut v = Vec::new();
        r.read_to_end(&mut v).map_err(|e| http_err(url, e))?;
        Ok(Some(v))
    }

    /// Stream `url` into `dest` if its sha256 is `sha256` (`against` names
    /// where that digest comes from). Returns the bytes read, or `None` when
    /// the URL does not exist. On a mismatch nothing is left behind.
    pub fn download_verified(
        &self,
        url: &str,
        dest: &Path,
        sha256: &str,
        against: &str,
    ) -> Result<Option<u64>, ArchiveError> {
        let Some(r) = self.open(url)? else {
            return Ok(None);
        };
        let dir = dest
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        std::fs::create_dir_all(&dir).map_err(ArchiveError::io(&dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(&dir)
            .map_err(ArchiveError::io(&dir))?;
        let mut w = crate::digest::HashWriter::new(std::io::BufWriter::new(tmp));
        let mut r = r;
        std::io::copy(&mut r, &mut w).map_err(|e| http_err(url, e))?;
        let (buf, actual, n) = w.finish();
        if actual != sha256 {
            return Err(ArchiveError::Hash {
                url: url.to_string(),
                against: against.to_string(),
                expected: sha256.to_string(),
                actual,
            });
        }
        let tmp = buf.into_inner().map_err(|e| ArchiveError::Io {
            path: dest.to_path_buf(),
            source: e.into_error(),
        })?;
        tmp.persist(dest).map_err(|e| ArchiveError::Io {
            path: dest.to_path_buf(),
            source: e.error,
        })?;
        Ok(Some(n))
    }
}
