//! A pass-through reader that watches a tar stream's headers before the
//! `tar` crate parses them.
//!
//! The `tar` crate reads GNU long-name (`L`), long-link (`K`) and PAX (`x`)
//! records whole into memory, bounded only by the stream; and it keeps no
//! count of entries. [`TarGuard`] follows the 512-byte block structure as the
//! bytes go by and fails the read (so the crate never sees the header) when:
//!
//! * an `L`, `K`, `x` or `g` record is longer than [`TarLimits::meta_bytes`];
//! * a PAX record is malformed or describes a sparse file;
//! * an entry is a GNU sparse (`S`), multi-volume (`M`) or volume (`V`)
//!   entry, which dpkg does not accept either;
//! * more than [`TarLimits::entries`] entries arrive.
//!
//! It holds at most one header and one bounded record at a time. A size
//! override from a PAX record is honoured the way the `tar` crate honours it,
//! so both agree on where the next header starts.

use std::io::{self, Read};

/// Bounds on one tar stream.
#[derive(Debug, Clone, Copy)]
pub struct TarLimits {
    /// Largest `L`/`K`/`x`/`g` record (PATH_MAX is 4096 on Linux).
    pub meta_bytes: u64,
    /// Most entries (not counting `L`/`K`/`x`/`g` records).
    pub entries: u64,
}

/// Why a guard stopped the stream; carried inside an `io::Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A record above the bound.
    Meta { kind: char, size: u64, limit: u64 },
    /// More entries than allowed.
    Entries { limit: u64 },
    /// Anything else, as a sentence.
    Other(String),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Meta { kind, size, limit } => write!(
                f,
                "a {} record of {size} bytes (the limit is {limit})",
                kind_name(*kind)
            ),
            Violation::Entries { limit } => write!(f, "more than {limit} entries"),
            Violation::Other(s) => f.write_str(s),
        }
    }
}
impl std::error::Error for Violation {}

fn kind_name(k: char) -> &'static str {
    match k {
        'L' => "GNU long-name",
        'K' => "GNU long-link",
        'x' => "PAX header",
        _ => "PAX global header",
    }
}

/// The guard's position in the block structure.
enum State {
    /// Filling a 512-byte header.
    Header,
    /// Passing `left` bytes of entry data (padding included) through.
    Skip { left: u64 },
    /// Collecting a bounded record (`x` is parsed for `size`), then `pad`.
    Record {
        kind: u8,
        buf: Vec<u8>,
        want: usize,
        pad: u64,
    },
    /// After the end-of-archive block: the tar crate reads no further.
    Done,
}

/// See the module documentation.
pub struct TarGuard<R> {
    inner: R,
    limits: TarLimits,
    state: State,
    header: [u8; 512],
    filled: usize,
    entries: u64,
    pax_size: Option<u64>,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R, limits: TarLimits) -> Self {
        TarGuard {
            inner,
            limits,
            state: State::Header,
            header: [0; 512],
            filled: 0,
            entries: 0,
            pax_size: None,
        }
    }

    /// The reader underneath.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Advance the state machine over `bytes` (already handed to the caller).
    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), Violation> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Skip { left } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
                State::Record {
                    kind,
                    buf,
                    want,
                    pad,
                } => {
                    let n = (*want - buf.len()).min(bytes.len());
                    buf.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if buf.len() == *want {
                        let pad = *pad;
                        if *kind == b'x' {
                            self.pax_size = pax_size(buf)?;
                        }
                        self.state = if pad == 0 {
                            State::Header
                        } else {
                            State::Skip { left: pad }
                        };
                    }
                }
                State::Header => {
                    let n = (512 - self.filled).min(bytes.len());
                    self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                    self.filled += n;
                    bytes = &bytes[n..];
                    if self.filled == 512 {
                        self.filled = 0;
                        self.state = self.on_header()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn count(&mut self) -> Result<(), Violation> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(Violation::Entries {
                limit: self.limits.entries,
            });
        }
        Ok(())
    }

    /// Decide what follows a complete header.
    fn on_header(&mut self) -> Result<State, Violation> {
        let h = &self.header;
        if h.iter().all(|&b| b == 0) {
            return Ok(State::Done);
        }
        let kind = h[156];
        let size = header_size(&h[124..136])
            .ok_or_else(|| Violation::Other("a tar header with a malformed size field".into()))?;
        let pad = |n: u64| (512 - n % 512) % 512;
        // The `tar` crate treats L/K/x as extensions only in ustar or GNU
        // headers; otherwise (and for `g`) they are entries of their own and
        // a pending PAX size is dropped. Follow it exactly.
        let recognized = &h[257..265] == b"ustar\x0000" || &h[257..265] == b"ustar  \x00";
        let extension = recognized && matches!(kind, b'L' | b'K' | b'x');
        match kind {
            b'L' | b'K' | b'x' | b'g' => {
                if size > self.limits.meta_bytes {
                    return Err(Violation::Meta {
                        kind: kind as char,
                        size,
                        limit: self.limits.meta_bytes,
                    });
                }
                if !extension {
                    self.pax_size = None;
                    self.count()?;
                }
                if size == 0 {
                    return Ok(State::Header);
                }
                Ok(State::Record {
                    kind: if extension { kind } else { b'g' },
                    buf: Vec::with_capacity(size as usize),
                    want: size as usize,
                    pad: pad(size),
                })
            }
            b'S' | b'M' | b'V' => Err(Violation::Other(format!(
                "a tar entry of type {:?} (sparse or multi-volume), which dpkg does not accept",
                kind as char
            ))),
            _ => {
                self.count()?;
                let size = self.pax_size.take().unwrap_or(size);
                let left = size
                    .checked_add(pad(size))
                    .ok_or_else(|| Violation::Other("a tar entry size overflows".into()))?;
                Ok(if left == 0 {
                    State::Header
                } else {
                    State::Skip { left }
                })
            }
        }
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// The size field: octal (NUL/space padded) or GNU base-256.
fn header_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        if f[0] != 0x80 || f[1..4].iter().any(|&b| b != 0) {
            return None; // negative or above 2^64
        }
        return Some(f[4..].iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)));
    }
    let s = std::str::from_utf8(f).ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// The `size` a PAX record sets for the next entry (the last one wins, as
/// in the `tar` crate); sparse-file keys are refused.
fn pax_size(buf: &[u8]) -> Result<Option<u64>, Violation> {
    let bad = || Violation::Other("a malformed PAX record".into());
    let mut rest = buf;
    let mut size = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > sp + 1 && l <= rest.len())
            .ok_or_else(bad)?;
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").ok_or_else(bad)?;
        let eq = rec.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&rec[..eq], &rec[eq + 1..]);
        if key.starts_with(b"GNU.sparse") {
            return Err(Violation::Other(
                "a PAX record describing a sparse file, which dpkg does not accept".into(),
            ));
        }
        if key == b"size" {
            let v = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(bad)?;
            size = Some(v);
        }
        rest = &rest[len..];
    }
    Ok(size)
}

/// The violation inside an io error from a guard, if any.
pub fn violation(e: &io::Error) -> Option<&Violation> {
    e.get_ref().and_then(|i| i.downcast_ref::<Violation>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], kind: u8, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name);
        let s = format!("{size:011o}");
        h[124..135].copy_from_slice(s.as_bytes());
        h[156] = kind;
        h[257..265].copy_from_slice(b"ustar  \0");
        h
    }

    fn drain(bytes: Vec<u8>, limits: TarLimits) -> io::Result<u64> {
        // Small reads, to cross block boundaries at odd places.
        let mut g = TarGuard::new(io::Cursor::new(bytes), limits);
        let mut buf = [0u8; 97];
        let mut total = 0;
        loop {
            let n = g.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    const L: TarLimits = TarLimits {
        meta_bytes: 4096,
        entries: 3,
    };

    #[test]
    fn a_huge_long_name_is_refused_from_its_header() {
        let mut t = header(b"././@LongLink", b'L', 3 << 30);
        t.extend(vec![0u8; 2048]);
        let e = drain(t, L).unwrap_err();
        let v = violation(&e).expect("a violation");
        assert!(matches!(v, Violation::Meta { kind: 'L', .. }), "{v}");
    }

    #[test]
    fn entries_are_counted_and_pax_sizes_followed() {
        let mut t = Vec::new();
        let rec = b"12 size=600\n";
        t.extend(header(b"pax", b'x', rec.len() as u64));
        t.extend(rec);
        t.extend(vec![0u8; 512 - rec.len()]);
        // Header says 0 bytes, PAX says 600: 1024 bytes of data follow.
        t.extend(header(b"a", b'0', 0));
        let mut fake = header(b"fake", b'0', 0); // data, not a header
        fake.extend(vec![0u8; 512]);
        t.extend(fake);
        for n in [b"b", b"c"] {
            t.extend(header(n, b'0', 0));
        }
        t.extend(vec![0u8; 1024]);
        assert!(drain(t.clone(), L).is_ok());
        let tight = TarLimits { entries: 2, ..L };
        let e = drain(t, tight).unwrap_err();
        assert_eq!(violation(&e), Some(&Violation::Entries { limit: 2 }));
    }

    #[test]
    fn sparse_is_refused() {
        let e = drain(header(b"s", b'S', 0), L).unwrap_err();
        assert!(violation(&e).unwrap().to_string().contains("sparse"));
    }
}
