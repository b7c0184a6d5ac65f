//! The `control` and `md5sums` files of a package, parsed, never copied.
//!
//! Scanners (syft, trivy, python-debian) read `/var/lib/dpkg/status.d/<pkg>`
//! with parsers more lenient than dpkg's, so a control file that dpkg would
//! refuse can make them see a second, forged package. Here a control file is
//! one stanza of well-formed fields or an error:
//!
//! * UTF-8, no control characters other than tab and newline;
//! * no whitespace-only line, no blank line followed by more text (one
//!   stanza), no continuation line before the first field;
//! * field names printable ASCII, not starting with `#` or `-`, each field
//!   once (names compare case-insensitively);
//! * `Package`, `Version`, `Architecture` present, on one line, and
//!   well-formed.
//!
//! [`Control::render`] writes the stanza back from the parsed fields (with
//! the `Status` field dropped: dpkg's status is imgforge's to state), and
//! [`parse_md5sums`] re-renders `md5sums` line by line.

/// One field: its name, the text after the colon, and its continuation
/// lines exactly as shipped (each starts with a space or a tab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub first: String,
    pub continuation: Vec<String>,
}

impl Field {
    /// The value as deb822 parsers give it: the first line, then each
    /// continuation line with its leading whitespace removed.
    pub fn value(&self) -> String {
        let mut v = self.first.clone();
        for c in &self.continuation {
            v.push('\n');
            v.push_str(c.trim_start_matches([' ', '\t']));
        }
        v
    }
}

/// A validated control stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub fields: Vec<Field>,
}

/// Longest control file accepted (real ones are a few KiB).
pub const MAX_CONTROL: u64 = 1 << 20;

impl Control {
    /// A field's first line (single-line fields) by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The stanza rebuilt from the fields, without `Status` and without a
    /// trailing newline.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in self
            .fields
            .iter()
            .filter(|f| !f.name.eq_ignore_ascii_case("Status"))
        {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&f.name);
            s.push(':');
            if !f.first.is_empty() {
                s.push(' ');
                s.push_str(&f.first);
            }
            for c in &f.continuation {
                s.push('\n');
                s.push_str(c);
            }
        }
        s
    }

    /// The fields as a `deb822_fast` paragraph (for code that reads them).
    pub fn paragraph(&self) -> deb822_fast::Paragraph {
        self.fields
            .iter()
            .map(|f| (f.name.clone(), f.value()))
            .collect()
    }
}

/// Characters no control file needs: C0/C1 controls and DEL, except tab.
fn bad_char(c: char) -> bool {
    c.is_control() && c != '\t' && c != '\n'
}

/// Parse one control stanza strictly. The error is the reason only.
pub fn parse(bytes: &[u8]) -> Result<Control, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
    if let Some((i, c)) = text.char_indices().find(|&(_, c)| bad_char(c)) {
        let line = text[..i].matches('\n').count() + 1;
        return Err(format!("control character {c:?} on line {line}"));
    }
    let body = text.trim_end_matches('\n');
    let mut fields: Vec<Field> = Vec::new();
    for (n, line) in body.split('\n').enumerate().map(|(i, l)| (i + 1, l)) {
        if line.is_empty() {
            return Err(format!(
                "a blank line at line {n} starts a second stanza; a control file has one"
            ));
        }
        if line.trim_matches([' ', '\t']).is_empty() {
            return Err(format!(
                "line {n} is whitespace only (lenient parsers take it as the end of the stanza)"
            ));
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = fields.last_mut() else {
                return Err(format!("line {n} is a continuation line before any field"));
            };
            last.continuation
                .push(line.trim_end_matches([' ', '\t']).to_string());
            continue;
        }
        let field = parse_field_line(line, n)?;
        if let Some(prev) = fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&field.name))
        {
            return Err(format!(
                "field {:?} appears twice (line {n}; first as {:?})",
                field.name, prev.name
            ));
        }
        fields.push(field);
    }
    let c = Control { fields };
    check_required(&c)?;
    Ok(c)
}

fn parse_field_line(line: &str, n: usize) -> Result<Field, String> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(format!("line {n} is not a field (no colon)"));
    };
    let name_ok = !name.is_empty()
        && !name.starts_with(['#', '-'])
        && name.bytes().all(|b| b.is_ascii_graphic());
    if !name_ok {
        return Err(format!("line {n}: {name:?} is not a valid field name"));
    }
    Ok(Field {
        name: name.to_string(),
        first: value.trim_matches([' ', '\t']).to_string(),
        continuation: Vec::new(),
    })
}

fn check_required(c: &Control) -> Result<(), String> {
    for (name, ok) in [
        ("Package", valid_package_name as fn(&str) -> bool),
        ("Version", valid_version),
        ("Architecture", valid_arch),
    ] {
        let f = c
            .get(name)
            .ok_or_else(|| format!("control file has no {name} field"))?;
        if !f.continuation.is_empty() || !ok(&f.first) {
            return Err(format!("{name} {:?} is not well-formed", f.value()));
        }
    }
    Ok(())
}

/// Debian policy 5.6.1, `[a-z0-9][a-z0-9+.-]+`, except that one character
/// is accepted (test indexes use them; nothing unsafe can hide in one).
pub fn valid_package_name(s: &str) -> bool {
    !s.is_empty()
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'-')
        })
}

fn valid_version(s: &str) -> bool {
    !s.contains(char::is_whitespace) && s.parse::<debversion::Version>().is_ok()
}

fn valid_arch(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parse `md5sums` (`<32 hex>  <path>` per line) and render it canonically.
pub fn parse_md5sums(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("md5sums is not UTF-8 ({e})"))?;
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.trim_end_matches('\n').split('\n').enumerate() {
        let n = n + 1;
        if line.is_empty() && text.trim_end_matches('\n').is_empty() {
            break;
        }
        let (sum, rest) = line
            .split_at_checked(32)
            .ok_or_else(|| format!("md5sums line {n} is too short"))?;
        let path = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| format!("md5sums line {n} has no \"  \" after the checksum"))?;
        if !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("md5sums line {n}: {sum:?} is not an md5 checksum"));
        }
        if path.is_empty() || path.chars().any(|c| c.is_control()) {
            return Err(format!(
                "md5sums line {n}: path {path:?} is empty or has control characters"
            ));
        }
        out.push_str(&sum.to_ascii_lowercase());
        out.push_str("  ");
        out.push_str(path);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Package: zlib1g\nVersion: 1:1.2.13.dfsg-1\nArchitecture: amd64\nStatus: purge ok not-installed\nDepends: libc6 (>= 2.14)\nDescription: compression library - runtime\n zlib is a library.\n .\n   indented\n";

    #[test]
    fn good_stanza_round_trips_without_status() {
        let c = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(c.get("package").unwrap().first, "zlib1g");
        let r = c.render();
        assert!(!r.contains("Status"));
        assert!(r.ends_with("zlib is a library.\n .\n   indented"), "{r}");
        assert_eq!(
            c.paragraph().get("Description"),
            Some("compression library - runtime\nzlib is a library.\n.\nindented")
        );
    }

    #[test]
    fn forgeries_are_refused() {
        let cases = [
            ("Package: libc6\n", "appears twice"),
            ("package: libc6\n", "appears twice"),
            (" \nPackage: libc6\n", "whitespace only"),
            ("\nPackage: libc6\nVersion: 99:1\n", "second stanza"),
            ("X-Evil: a\rb\n", "control character"),
            ("X-Evil: a\u{85}b\n", "control character"),
            ("#comment: x\n", "not a valid field name"),
            ("nocolon\n", "no colon"),
        ];
        for (extra, want) in cases {
            let t = format!("{GOOD}{extra}");
            let e = parse(t.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        assert!(
            parse(b" Package: x\n")
                .unwrap_err()
                .contains("before any field")
        );
        assert!(parse(b"Package: ../x\nVersion: 1\nArchitecture: amd64\n").is_err());
        assert!(
            parse(b"Package: x1\nVersion: 1\n")
                .unwrap_err()
                .contains("Architecture")
        );
    }

    #[test]
    fn md5sums_are_checked_and_rendered() {
        let ok = "0123456789abcdef0123456789ABCDEF  usr/lib/x\n";
        assert_eq!(
            parse_md5sums(ok.as_bytes()).unwrap(),
            "0123456789abcdef0123456789abcdef  usr/lib/x\n"
        );
        assert_eq!(parse_md5sums(b"").unwrap(), "");
        assert!(parse_md5sums(b"0123456789abcdef0123456789abcdef  a\rb\n").is_err());
        assert!(parse_md5sums(b"zz23456789abcdef0123456789abcdef  a\n").is_err());
        assert!(parse_md5sums(b"0123456789abcdef0123456789abcdef  a\n\nx\n").is_err());
    }
}
