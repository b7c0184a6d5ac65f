//! Debian changelog entries between two versions, from a package's
//! `usr/share/doc/<pkg>/changelog.Debian.gz`, with the CVE ids they name:
//! what `imgforge update` shows for review.

use debversion::Version;
use std::io::Read;
use std::path::Path;

/// One changelog entry (`pkg (version) suite; urgency=...` to its trailer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub version: String,
    /// The whole entry, as written.
    pub text: String,
}

/// Entries with `old < version <= new`, newest first (as written).
pub fn between(text: &str, old: &Version, new: &Version) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut cur: Option<Entry> = None;
    for line in text.lines() {
        let header = !line.starts_with([' ', '\t']) && line.contains(" (") && line.contains(')');
        if header {
            if let Some(e) = cur.take() {
                out.push(e);
            }
            let v = line
                .split_once(" (")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(v, _)| v.to_string())
                .unwrap_or_default();
            cur = Some(Entry {
                version: v,
                text: String::new(),
            });
        }
        if let Some(e) = &mut cur {
            e.text.push_str(line);
            e.text.push('\n');
        }
    }
    out.extend(cur);
    out.into_iter()
        .filter(|e| {
            e.version
                .parse::<Version>()
                .is_ok_and(|v| &v > old && &v <= new)
        })
        .map(|mut e| {
            e.text = e.text.trim_end().to_string();
            e
        })
        .collect()
}

/// The CVE ids named in `text`, sorted and unique.
pub fn cves(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"CVE-\d{4}-\d{4,}").expect("valid regex");
    let mut v: Vec<String> = re.find_iter(text).map(|m| m.as_str().to_string()).collect();
    v.sort();
    v.dedup();
    v
}

/// The decompressed `changelog.Debian.gz` of `pkg` in `deb`, if it ships one
/// (`None` also when the doc directory is a symlink to another package's).
pub fn read(deb: &Path, pkg: &str) -> Result<Option<String>, crate::deb::DebError> {
    let name = format!("usr/share/doc/{pkg}/changelog.Debian.gz");
    let f = crate::deb::read_data_file(deb, &crate::deb::Limits::default(), &name)?;
    let Some(crate::deb::DataFile::File(bytes)) = f else {
        return Ok(None);
    };
    Ok(decode(&bytes))
}

/// The text of a `changelog.Debian.gz` (`None` when it is not gzip text);
/// also for a changelog read from an image layer (the bundle's report).
pub fn decode(gz: &[u8]) -> Option<String> {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_string(&mut s)
        .ok()
        .map(|_| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "zlib (1:1.3-2) unstable; urgency=medium\n\n  * Fix CVE-2024-0001 and CVE-2023-1234.\n\n -- A <a@b>  Mon, 01 Jan 2024 00:00:00 +0000\n\nzlib (1:1.3-1) unstable; urgency=low\n\n  * New upstream.\n\n -- A <a@b>  Mon, 01 Jan 2023 00:00:00 +0000\n\nzlib (1:1.2-1) unstable; urgency=low\n\n  * Old. CVE-2020-9999\n\n -- A <a@b>  Mon, 01 Jan 2020 00:00:00 +0000\n";

    #[test]
    fn entries_between_versions_with_cves() {
        let e = between(
            LOG,
            &"1:1.2-1".parse().unwrap(),
            &"1:1.3-2".parse().unwrap(),
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].version, "1:1.3-2");
        assert!(e[1].text.contains("New upstream"));
        let all: String = e.iter().map(|e| e.text.clone()).collect();
        assert_eq!(cves(&all), ["CVE-2023-1234", "CVE-2024-0001"]);
    }
}
