//! A parser for machine-readable Debian copyright files (DEP-5,
//! `copyright-format/1.0`).
//!
//! The file is a sequence of deb822 paragraphs: a header (with `Format:`),
//! `Files:` paragraphs (file patterns, copyright, a `License:` whose first line
//! is the license expression and whose further lines may hold the text), and
//! stand-alone `License:` paragraphs giving the text of a name used above.
//!
//! Real copyright files bend deb822 (tabs, odd indentation, `#` comments), so
//! this is a tolerant line parser rather than a strict deb822 one. Only the
//! first line of a `License:` field is ever read as license names: license
//! texts and comments are never mistaken for names.

/// One `Files:` paragraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesStanza {
    /// The file patterns (whitespace-separated in the field).
    pub patterns: Vec<String>,
    /// The first line of `License:` (the short-name expression).
    pub license: String,
    /// The rest of the `License:` field (license text), if any.
    pub text: String,
}

/// A parsed DEP-5 file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dep5 {
    /// `Files:` paragraphs in file order.
    pub files: Vec<FilesStanza>,
    /// Stand-alone `License:` paragraphs: (short name, text).
    pub licenses: Vec<(String, String)>,
    /// `License:` of the header paragraph, if any (synopsis line).
    pub header_license: Option<String>,
}

impl Dep5 {
    /// The text given for a short name, either in a stand-alone paragraph
    /// (case-insensitive name match).
    pub fn text_for(&self, name: &str) -> Option<&str> {
        self.licenses
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(_, t)| t.as_str())
    }
}

/// Whether a copyright file declares the machine-readable format.
pub fn is_dep5(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim_end)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    first.is_some_and(|l| {
        let lower = l.to_ascii_lowercase();
        (lower.starts_with("format:") || lower.starts_with("format-specification:"))
            && (lower.contains("copyright-format")
                || lower.contains("dep5")
                || lower.contains("dep-5"))
    })
}

type Para = Vec<(String, Vec<String>)>;

/// Split into paragraphs of (field name, lines of value).
fn paragraphs(text: &str) -> Vec<Para> {
    let mut out: Vec<Para> = Vec::new();
    let mut cur: Para = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = cur.last_mut() {
                let l = line.trim();
                v.push(if l == "." {
                    String::new()
                } else {
                    l.to_string()
                });
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if !name.contains(' ') => {
                cur.push((name.trim().to_string(), vec![value.trim().to_string()]));
            }
            _ => {
                // Unindented text inside a paragraph: treat as continuation.
                if let Some((_, v)) = cur.last_mut() {
                    v.push(line.trim().to_string());
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(p: &'a Para, name: &str) -> Option<&'a Vec<String>> {
    p.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Parse a DEP-5 copyright file. Never fails: paragraphs that are neither
/// `Files:` nor `License:` are skipped.
pub fn parse(text: &str) -> Dep5 {
    let mut d = Dep5::default();
    for (i, p) in paragraphs(text).into_iter().enumerate() {
        let lic = field(&p, "License");
        if let Some(files) = field(&p, "Files") {
            let patterns = files
                .iter()
                .flat_map(|l| l.split_whitespace())
                .map(str::to_string)
                .collect();
            let (license, text) = match lic {
                Some(v) => (v[0].clone(), v[1..].join("\n").trim().to_string()),
                None => (String::new(), String::new()),
            };
            d.files.push(FilesStanza {
                patterns,
                license,
                text,
            });
        } else if let Some(v) = lic {
            let is_header = i == 0 && field(&p, "Format").is_some();
            if is_header {
                d.header_license = Some(v[0].clone());
            } else {
                d.licenses
                    .push((v[0].clone(), v[1..].join("\n").trim().to_string()));
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stanzas_and_standalone_licenses() {
        let t = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                 Files: *\nCopyright: x\nLicense: GPL-2+\n\nFiles: debian/*\n a/b\nLicense: MIT\n\n\
                 License: GPL-2+\n This program is free software.\n .\n License: not-a-name\n";
        assert!(is_dep5(t));
        let d = parse(t);
        assert_eq!(d.files.len(), 2);
        assert_eq!(d.files[1].patterns, vec!["debian/*", "a/b"]);
        assert_eq!(d.licenses.len(), 1);
        assert!(d.text_for("gpl-2+").unwrap().contains("free software"));
    }
}
