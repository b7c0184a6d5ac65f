//! What the docker-load bundle must not contain: zstd layers, which Docker
//! before 23.0 rejects (`archive/tar: invalid tar header`) with no hint of
//! the cause. A bundle is meant for sites whose Docker version the builder
//! does not control, so it is refused unless forced.

use crate::layer::Compression;

/// A bundle that not every `docker load` can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error(
        "--bundle with --compression zstd: Docker before 23.0 cannot load zstd-compressed layers (`docker load` fails with `archive/tar: invalid tar header`), and the bundle exists to be loaded on sites you do not control\nhelp: drop --compression zstd (gzip is the default and loads everywhere), or add --force when every target runs Docker 23 or later (or containerd 1.5 or later)"
    )]
    Zstd,
}

/// Refuse a zstd bundle unless `force`.
pub fn check_bundle(
    compression: Compression,
    bundle: bool,
    force: bool,
) -> Result<(), BundleError> {
    match compression {
        Compression::Zstd(_) if bundle && !force => Err(BundleError::Zstd),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_bundle_is_refused_unless_forced() {
        assert_eq!(
            check_bundle(Compression::Zstd(3), true, false),
            Err(BundleError::Zstd)
        );
        assert_eq!(check_bundle(Compression::Zstd(3), true, true), Ok(()));
        assert_eq!(check_bundle(Compression::Zstd(3), false, false), Ok(()));
        assert_eq!(check_bundle(Compression::Gzip(6), true, false), Ok(()));
    }
}
