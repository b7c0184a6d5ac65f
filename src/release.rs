//! Names that tell the truth: the Debian point release an image really
//! ships (`/etc/debian_version` of the locked `base-files`), and a check
//! that refuses a base tag naming another one (`bookworm-12.12` over a
//! `base-files` that says `12.15`).

use std::path::{Path, PathBuf};

/// The Debian release read from `base-files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianRelease {
    /// `/etc/debian_version`, e.g. `12.15`.
    pub version: String,
    /// The `base-files` version it came from.
    pub base_files: String,
}

/// Errors of the release check.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "{file}: tag {tag:?} names Debian {named}, but the image ships base-files {}, whose /etc/debian_version says {}\nhelp: set tag = {suggested:?} in [image], or pin the base-files version of Debian {named}",
        release.base_files,
        release.version
    )]
    TagMismatch {
        file: PathBuf,
        tag: String,
        named: String,
        suggested: String,
        release: Box<DebianRelease>,
    },
    #[error(
        "cannot read /etc/debian_version from {deb}: {reason}\nhelp: base-files is the package that ships it; check the .deb (its sha256 is in the lock)"
    )]
    Unreadable { deb: PathBuf, reason: String },
}

/// `/etc/debian_version` from a `base-files` package.
pub fn read_release(deb: &Path, base_files_version: &str) -> Result<DebianRelease, ReleaseError> {
    let unreadable = |reason: String| ReleaseError::Unreadable {
        deb: deb.to_path_buf(),
        reason,
    };
    let f = crate::deb::read_data_file(deb, &crate::deb::Limits::default(), "etc/debian_version")
        .map_err(|e| unreadable(e.to_string()))?;
    match f {
        Some(crate::deb::DataFile::File(b)) => Ok(DebianRelease {
            version: String::from_utf8_lossy(&b).trim().to_string(),
            base_files: base_files_version.to_string(),
        }),
        _ => Err(unreadable(
            "the package has no etc/debian_version file".into(),
        )),
    }
}

/// Point-release numbers (`12.12`) a tag names: the `N.N` tokens between
/// characters that are not digits or dots.
fn named_releases(tag: &str) -> Vec<&str> {
    tag.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| {
            let mut parts = t.split('.');
            let ok = |p: Option<&str>| {
                p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            };
            ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
        })
        .collect()
}

/// Refuse a tag that names a point release of the same Debian major
/// version other than the one shipped. Tags naming no release (`bookworm`,
/// `1.0.0` of another major) pass.
pub fn check_tag(file: &Path, tag: &str, release: &DebianRelease) -> Result<(), ReleaseError> {
    let major = release.version.split('.').next().unwrap_or_default();
    for named in named_releases(tag) {
        if named.split('.').next() == Some(major) && named != release.version {
            return Err(ReleaseError::TagMismatch {
                file: file.to_path_buf(),
                tag: tag.to_string(),
                named: named.to_string(),
                suggested: tag.replace(named, &release.version),
                release: Box::new(release.clone()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(v: &str) -> DebianRelease {
        DebianRelease {
            version: v.into(),
            base_files: "12.4+deb12u15".into(),
        }
    }

    #[test]
    fn tags_naming_another_point_release_are_refused() {
        let f = Path::new("base/base.toml");
        let e = check_tag(f, "bookworm-12.12", &rel("12.15")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "base/base.toml: tag \"bookworm-12.12\" names Debian 12.12, but the image ships base-files 12.4+deb12u15, whose /etc/debian_version says 12.15\nhelp: set tag = \"bookworm-12.15\" in [image], or pin the base-files version of Debian 12.12"
        );
        assert!(check_tag(f, "bookworm-12.15", &rel("12.15")).is_ok());
        assert!(check_tag(f, "bookworm", &rel("12.15")).is_ok());
        assert!(check_tag(f, "1.0.0", &rel("12.15")).is_ok());
        assert!(check_tag(f, "v3.11-12.15", &rel("12.15")).is_ok());
        assert!(check_tag(f, "12.1", &rel("12.15")).is_err());
    }
}
