//! The `ar` container of a `.deb`, read as strictly as dpkg reads it.
//!
//! A `.deb` needs only three members with short names, so this reader is a
//! few dozen lines instead of a general `ar` library (whose GNU/BSD name
//! tables were the source of panics and huge allocations on hostile input):
//!
//! * the magic `!<arch>\n`, then 60-byte headers ending in `` `\n ``;
//! * member names are short, printable names (a trailing `/` is allowed);
//!   name tables (`/`, `//`, `/N`) and BSD long names (`#1/N`) are refused;
//! * every size is plain decimal and fits inside the file;
//! * `debian-binary` comes first and says major version 2;
//! * then `control.tar*`, then `data.tar*`; members whose names start with
//!   `_` may sit between them (dpkg ignores them); anything after the data
//!   member is not read at all.
//!
//! Nothing here allocates more than one 60-byte header and a short
//! `debian-binary` at a time.

use std::io::{Read, Seek, SeekFrom};

/// Where one member's bytes are in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name without a trailing `/`.
    pub name: String,
    /// Offset of the first data byte.
    pub offset: u64,
    /// Data length.
    pub size: u64,
}

/// The two members a `.deb` is read for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub control: Member,
    pub data: Member,
}

const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER: u64 = 60;
/// `debian-binary` is "2.0\n"; anything much longer is not a version.
const MAX_VERSION_MEMBER: u64 = 64;

/// Compression suffixes dpkg accepts after `control.tar` / `data.tar`.
const CONTROL_SUFFIXES: [&str; 4] = ["", ".gz", ".xz", ".zst"];
const DATA_SUFFIXES: [&str; 6] = ["", ".gz", ".xz", ".zst", ".bz2", ".lzma"];

/// Read the member table of a `.deb` of `len` bytes. Errors are the reason
/// only; the caller adds the package path.
pub fn layout<R: Read + Seek>(r: &mut R, len: u64) -> Result<Layout, String> {
    let mut magic = [0u8; 8];
    if len < 8 {
        return Err("shorter than an ar header (not an ar archive)".into());
    }
    r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    r.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if &magic != MAGIC {
        return Err("no ar magic \"!<arch>\\n\" at the start (not an ar archive)".into());
    }
    let mut pos = 8u64;
    let first = next_member(r, &mut pos, len)?.ok_or("empty ar archive (no members)")?;
    if first.name != "debian-binary" {
        return Err(format!(
            "first member is {:?}, expected \"debian-binary\"",
            first.name
        ));
    }
    check_version(r, &first)?;
    let mut control: Option<Member> = None;
    while let Some(m) = next_member(r, &mut pos, len)? {
        if m.name.starts_with('_') {
            continue;
        }
        if let Some(kind) = member_kind(&m.name) {
            match (kind, &control) {
                (Kind::Control, None) => control = Some(m),
                (Kind::Control, Some(_)) => {
                    return Err(format!("a second control member {:?}", m.name));
                }
                (Kind::Data, None) => {
                    return Err(format!(
                        "data member {:?} comes before the control member",
                        m.name
                    ));
                }
                // Members after the data member are never read (as dpkg).
                (Kind::Data, Some(_)) => {
                    let control = control.take().expect("checked above");
                    return Ok(Layout { control, data: m });
                }
            }
        } else {
            return Err(format!(
                "unexpected member {:?} (a .deb holds debian-binary, control.tar*, data.tar*)",
                m.name
            ));
        }
    }
    Err(match control {
        None => "no control.tar* member".into(),
        Some(_) => "no data.tar* member".into(),
    })
}

enum Kind {
    Control,
    Data,
}

fn member_kind(name: &str) -> Option<Kind> {
    let has = |base: &str, suffixes: &[&str]| {
        name.strip_prefix(base)
            .is_some_and(|rest| suffixes.contains(&rest))
    };
    if has("control.tar", &CONTROL_SUFFIXES) {
        Some(Kind::Control)
    } else if has("data.tar", &DATA_SUFFIXES) {
        Some(Kind::Data)
    } else {
        None
    }
}

/// `debian-binary` must be `2.<minor>` followed by a newline.
fn check_version<R: Read + Seek>(r: &mut R, m: &Member) -> Result<(), String> {
    if m.size > MAX_VERSION_MEMBER {
        return Err(format!(
            "debian-binary is {} bytes long, not a format version",
            m.size
        ));
    }
    let mut buf = vec![0u8; m.size as usize];
    r.seek(SeekFrom::Start(m.offset))
        .and_then(|_| r.read_exact(&mut buf))
        .map_err(|e| format!("cannot read debian-binary: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.split('\n').next().unwrap_or("");
    let (major, minor) = line.split_once('.').unwrap_or((line, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if major != "2" || !digits(minor) || !text.contains('\n') {
        return Err(format!(
            "debian-binary says format {:?}; only format 2.x is supported",
            line.chars().take(16).collect::<String>()
        ));
    }
    Ok(())
}

/// Read the header at `*pos` and move `*pos` past the member (and its pad).
fn next_member<R: Read + Seek>(
    r: &mut R,
    pos: &mut u64,
    len: u64,
) -> Result<Option<Member>, String> {
    if *pos >= len {
        return Ok(None);
    }
    if len - *pos < HEADER {
        return Err(format!(
            "truncated member header at offset {} ({} bytes left, 60 needed)",
            *pos,
            len - *pos
        ));
    }
    let mut h = [0u8; HEADER as usize];
    r.seek(SeekFrom::Start(*pos))
        .and_then(|_| r.read_exact(&mut h))
        .map_err(|e| format!("cannot read the member header at offset {}: {e}", *pos))?;
    if &h[58..60] != b"`\n" {
        return Err(format!("bad member header at offset {}", *pos));
    }
    let name = member_name(&h[0..16])?;
    let size =
        decimal(&h[48..58]).ok_or_else(|| format!("member {name:?} has a malformed size field"))?;
    let offset = *pos + HEADER;
    let left = len - offset;
    if size > left {
        return Err(format!(
            "member {name:?} claims {size} bytes but only {left} remain in the file"
        ));
    }
    // Members are padded to an even offset; a missing final pad is tolerated.
    *pos = offset + size + (size & 1);
    Ok(Some(Member { name, offset, size }))
}

fn member_name(raw: &[u8]) -> Result<String, String> {
    let end = raw.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let raw = &raw[..end];
    let shown = String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(format!(
            "member name {shown:?} refers to an ar name table, which a .deb never has"
        ));
    }
    if raw.starts_with(b"#1/") {
        return Err(format!(
            "member name {shown:?} is a BSD long name, which a .deb never has"
        ));
    }
    let name = raw.strip_suffix(b"/").unwrap_or(raw);
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
        return Err(format!("member name {shown:?} is empty or not printable"));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// A space-padded decimal field. dpkg accepts nothing else.
fn decimal(field: &[u8]) -> Option<u64> {
    let end = field.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let digits = &field[..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            100644,
            data.len()
        )
        .into_bytes();
        v.extend_from_slice(data);
        if data.len() % 2 == 1 {
            v.push(b'\n');
        }
        v
    }

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        for (n, d) in members {
            v.extend(member(n, d));
        }
        v
    }

    fn read(bytes: &[u8]) -> Result<Layout, String> {
        layout(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn accepts_a_plain_deb_and_ignores_trailing_members() {
        let b = ar(&[
            ("debian-binary", b"2.0\n"),
            ("_gpgorigin", b"sig"),
            ("control.tar.gz", b"abc"),
            ("data.tar.xz", b"defg"),
            ("junk//", b"x"),
        ]);
        let l = read(&b).unwrap();
        assert_eq!(l.control.name, "control.tar.gz");
        assert_eq!(l.data.name, "data.tar.xz");
        assert_eq!(l.data.size, 4);
        assert_eq!(&b[l.data.offset as usize..][..4], b"defg");
    }

    #[test]
    fn refuses_structural_lies() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                ar(&[
                    ("debian-binary", b"3.0\n"),
                    ("control.tar", b""),
                    ("data.tar", b""),
                ]),
                "format",
            ),
            (
                ar(&[
                    ("control.tar", b""),
                    ("debian-binary", b"2.0\n"),
                    ("data.tar", b""),
                ]),
                "first member",
            ),
            (
                ar(&[
                    ("debian-binary", b"2.0\n"),
                    ("data.tar", b""),
                    ("control.tar", b""),
                ]),
                "before the control",
            ),
            (
                ar(&[("debian-binary", b"2.0\n"), ("/5", b"")]),
                "name table",
            ),
            (
                ar(&[("debian-binary", b"2.0\n"), ("//", b"")]),
                "name table",
            ),
            (ar(&[("debian-binary", b"2.0\n"), ("#1/20", b"")]), "BSD"),
            (
                ar(&[("debian-binary", b"2.0\n"), ("control.tar", b"")]),
                "no data",
            ),
            (
                ar(&[("debian-binary", b"2.0\n"), ("evil", b"")]),
                "unexpected",
            ),
        ];
        for (bytes, want) in cases {
            let e = read(&bytes).unwrap_err();
            assert!(e.contains(want), "{e:?} does not mention {want:?}");
        }
    }

    #[test]
    fn refuses_sizes_beyond_the_file() {
        let mut b = ar(&[("debian-binary", b"2.0\n"), ("control.tar", b"ab")]);
        let at = b.len() - 2 - 12; // size field of the last header
        b[at..at + 10].copy_from_slice(b"9999999999");
        let e = read(&b).unwrap_err();
        assert!(e.contains("remain in the file"), "{e}");
    }

    #[test]
    fn the_68_byte_fuzz_finding_is_an_error() {
        let b = hex::decode(
            "213c617263683e0a2f352020202020202020202020202020302020202020202020202020302020202020302020202020363434202020202030202020202020202020600a",
        )
        .unwrap();
        assert_eq!(b.len(), 68);
        assert!(read(&b).unwrap_err().contains("name table"));
    }
}
