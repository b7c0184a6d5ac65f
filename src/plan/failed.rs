//! One failing image does not hide the others: every image's chain runs to
//! its end whatever the others do, so each image that does not depend on a
//! failed one is built and its steps stored (the next build reuses them).
//! Then, if any image failed, the build stops before its outputs with a
//! [`BuildFailed`]: every failure, by image name, and a summary. The
//! output directory is not replaced. The base is below every image: its
//! failure fails the build at once, as any other error.

use super::exec::ImageBuilt;
use std::path::{Path, PathBuf};

/// One failure of one image.
#[derive(Debug)]
pub struct ImageFailure {
    /// The image's name.
    pub image: String,
    /// What failed, naming the image (with its `help:` and log pointer).
    pub error: anyhow::Error,
}

/// Some images failed; the others built and their steps are in the step
/// store. Its message is the summary line; the failures themselves are in
/// [`BuildFailed::failures`] (`ops::render_error` prints each, then the
/// summary).
#[derive(Debug, thiserror::Error)]
#[error(
    "{} of {} image(s) failed: {}; built: {}; {} not replaced",
    self.failed().len(),
    self.images,
    self.failed().join(", "),
    if self.built.is_empty() { "none".to_string() } else { self.built.join(", ") },
    self.out.display()
)]
pub struct BuildFailed {
    /// Every failure, sorted by image name (an image whose runtime layers
    /// and build stage both failed has two, in that order).
    pub failures: Vec<ImageFailure>,
    /// The images that built, by name.
    pub built: Vec<String>,
    /// How many images the build has (the base not counted).
    pub images: usize,
    /// The output directory, left as it was.
    pub out: PathBuf,
}

impl BuildFailed {
    /// The names of the images that failed, sorted, each once.
    pub fn failed(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.failures.iter().map(|f| f.image.as_str()).collect();
        names.dedup();
        names
    }
}

/// The images' results (`images` are their names, in the same order) as
/// what every image built, or every failure.
pub fn check(
    images: &[&str],
    results: Vec<Result<ImageBuilt, Vec<anyhow::Error>>>,
    out: &Path,
) -> Result<Vec<ImageBuilt>, BuildFailed> {
    let mut built = Vec::new();
    let mut names = Vec::new();
    let mut failures = Vec::new();
    for (img, r) in images.iter().zip(results) {
        match r {
            Ok(b) => {
                built.push(b);
                names.push(img.to_string());
            }
            Err(errors) => failures.extend(errors.into_iter().map(|e| ImageFailure {
                image: img.to_string(),
                error: named(img, e),
            })),
        }
    }
    if failures.is_empty() {
        return Ok(built);
    }
    // Stable: an image's own failures keep their order.
    failures.sort_by(|a, b| a.image.cmp(&b.image));
    names.sort();
    Err(BuildFailed {
        failures,
        built: names,
        images: images.len(),
        out: out.to_path_buf(),
    })
}

/// `e`, with `image {name}` above it unless some message of its chain
/// already names the image.
fn named(name: &str, e: anyhow::Error) -> anyhow::Error {
    if e.chain().any(|c| mentions(&c.to_string(), name)) {
        e
    } else {
        e.context(format!("image {name}"))
    }
}

/// Whether `text` has `name` as a word: not inside a longer name or a file
/// name (`app.toml`); a full stop may follow it.
fn mentions(text: &str, name: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let mut after = text[i + name.len()..].chars();
        let next = match after.next() {
            Some('.') => after.next(),
            c => c,
        };
        !before.is_some_and(|c| part(c) || c == '.') && !next.is_some_and(part)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Result<ImageBuilt, Vec<anyhow::Error>> {
        Ok(ImageBuilt {
            layers: vec![],
            history: vec![],
            artifacts: vec![],
            packages: vec![],
        })
    }

    #[test]
    fn every_failure_is_kept_by_image_name_with_a_summary() {
        let images = ["zeta", "app", "mid", "beta"];
        let results = vec![
            Err(vec![anyhow::anyhow!("zeta: p: `postinst` failed")]),
            ok(),
            Err(vec![
                anyhow::anyhow!("mid: q: `postinst` failed"),
                anyhow::anyhow!("cannot write the store"),
            ]),
            ok(),
        ];
        let e = check(&images, results, Path::new("out")).err().unwrap();
        let order: Vec<(&str, String)> = e
            .failures
            .iter()
            .map(|f| (f.image.as_str(), format!("{:#}", f.error)))
            .collect();
        assert_eq!(
            order,
            [
                ("mid", "mid: q: `postinst` failed".to_string()),
                ("mid", "image mid: cannot write the store".to_string()),
                ("zeta", "zeta: p: `postinst` failed".to_string()),
            ]
        );
        assert_eq!(
            e.to_string(),
            "2 of 4 image(s) failed: mid, zeta; built: app, beta; out not replaced"
        );
    }

    #[test]
    fn nothing_failed_gives_every_image_in_order() {
        let images = ["b", "a"];
        let built = check(&images, vec![ok(), ok()], Path::new("out")).unwrap();
        assert_eq!(built.len(), 2);
    }

    #[test]
    fn a_name_counts_only_as_a_word() {
        assert!(mentions("app: x failed", "app"));
        assert!(mentions("layer app packages of a", "app"));
        assert!(mentions("image app.", "app"));
        assert!(!mentions("apparmor: x failed", "app"));
        assert!(!mentions("my-app: x", "app"));
        assert!(!mentions("app.toml: bad", "app"));
    }
}
