//! The content-addressed caches under the cache root:
//!
//! ```text
//! store/sha256/<hex>.deb          every .deb ever fetched, by its sha256
//! store/source/sha256/<hex>       source package files (.dsc, tarballs)
//! archive/by-hash/<hex>           verified Packages indexes, by sha256
//! archive/release/<key>/InRelease last verified Release of one uri+suite
//! ```
//!
//! A `.deb` is found again from the lock's sha256 alone, with no index;
//! files only appear here after their hash was checked (staged, renamed).

use super::ArchiveError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The store and index cache under one cache root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(cache: &Path) -> Self {
        Store {
            root: cache.to_path_buf(),
        }
    }

    /// Where the `.deb` with this sha256 lives (whether or not it exists).
    pub fn deb_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("store")
            .join("sha256")
            .join(format!("{sha256}.deb"))
    }

    /// The stored `.deb` with this sha256, if present. Callers check the
    /// hash again before use (the lock's sha256).
    pub fn deb(&self, sha256: &str) -> Option<PathBuf> {
        let p = self.deb_path(sha256);
        p.is_file().then_some(p)
    }

    /// Where a source package file (`.dsc`, tarball) with this sha256
    /// lives (whether or not it exists).
    pub fn source_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("store")
            .join("source")
            .join("sha256")
            .join(sha256)
    }

    /// A verified index file, by sha256.
    pub fn index_path(&self, sha256: &str) -> PathBuf {
        self.root.join("archive").join("by-hash").join(sha256)
    }

    /// The directory holding the last verified Release of `uri suite`.
    pub fn release_dir(&self, uri: &str, suite: &str) -> PathBuf {
        let key = crate::digest::sha256_hex(format!("{uri} {suite}").as_bytes());
        self.root.join("archive").join("release").join(&key[..32])
    }

    /// Every stored `.deb`: (sha256, path, size), sorted by sha256.
    pub fn debs(&self) -> Vec<(String, PathBuf, u64)> {
        let dir = self.root.join("store").join("sha256");
        let mut v: Vec<(String, PathBuf, u64)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let sha = name.strip_suffix(".deb")?.to_string();
                let size = e.metadata().ok()?.len();
                Some((sha, e.path(), size))
            })
            .collect();
        v.sort();
        v
    }
}

/// A stored index, decompressed as it is read (xz, gzip or plain, by its
/// magic bytes).
pub fn open_index(path: &Path) -> Result<std::io::BufReader<Box<dyn Read>>, ArchiveError> {
    let mut f = std::fs::File::open(path).map_err(ArchiveError::io(path))?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).map_err(ArchiveError::io(path))?;
    let f = std::fs::File::open(path).map_err(ArchiveError::io(path))?;
    let r: Box<dyn Read> = if n >= 6 && magic == [0xfd, b'7', b'z', b'X', b'Z', 0] {
        Box::new(liblzma::read::XzDecoder::new(f))
    } else if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(std::io::BufReader::with_capacity(1 << 16, r))
}
