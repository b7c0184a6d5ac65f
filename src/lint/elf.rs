//! What the lint needs of one file, read from the front of its stream
//! (a layer tar entry, never seeked): the `#!` line of a script, or an ELF
//! file's `PT_INTERP` and the `DT_NEEDED`, `DT_RUNPATH` and `DT_RPATH`
//! entries of its dynamic section.
//!
//! An ELF file is read forward only. Its header and program headers are at
//! the front; the dynamic segment may be far in (after the code), and the
//! string table it points into (`DT_STRTAB`) is near the front. So the
//! bytes before the dynamic segment are kept, up to [`KEEP`], and the rest
//! is skipped: memory is bounded per file, whatever its size. A string
//! table outside what was kept (no toolchain lays one out so) leaves the
//! file unread, as do malformed headers: the lint reports nothing it could
//! not read.

use goblin::elf::dynamic::{DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH, DT_STRSZ, DT_STRTAB};
use goblin::elf::header::{ET_DYN, ET_EXEC};
use goblin::elf::program_header::{PT_DYNAMIC, PT_INTERP, PT_LOAD};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// Bytes of a `#!` line read (the kernel's `BINPRM_BUF_SIZE`).
pub const MAX_SHEBANG: usize = 256;
/// Bytes before the dynamic segment kept for its string table.
pub const KEEP: u64 = 8 << 20;
/// Largest program header table, string table or dynamic segment read.
const MAX_TABLE: u64 = 4 << 20;

/// What a file's first bytes say about how it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    /// Not read (not executable, not a shared object).
    Unread,
    /// A dynamic or static ELF executable or shared object.
    Elf(ElfInfo),
    /// `#!interp arg`.
    Script {
        interp: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arg: Option<String>,
    },
    /// Small text the lint reads (`/etc/ld.so.conf*`).
    Text(String),
    /// Read, but neither ELF nor `#!` (or an ELF file it could not read).
    Other,
}

/// The loader's view of an ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needed: Vec<String>,
    /// `DT_RUNPATH`, split at `:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runpath: Vec<String>,
    /// `DT_RPATH`, split at `:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpath: Vec<String>,
}

/// Read what `r` (a file of `size` bytes) is: ELF, script or other.
pub fn read_content(r: &mut dyn Read, size: u64) -> io::Result<Content> {
    let mut s = Stream {
        r,
        size,
        kept: Vec::new(),
        pos: 0,
    };
    s.keep_to(MAX_SHEBANG as u64)?;
    if s.kept.starts_with(b"#!") {
        return Ok(shebang(&s.kept));
    }
    if !s.kept.starts_with(b"\x7fELF") {
        return Ok(Content::Other);
    }
    Ok(read_elf(&mut s)?.map_or(Content::Other, Content::Elf))
}

/// `#!interp arg` as the kernel splits it: the interpreter up to the first
/// blank, the rest (trimmed) one argument.
pub fn shebang(head: &[u8]) -> Content {
    let line = &head[2..];
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let line = String::from_utf8_lossy(line);
    let line = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
    let (interp, arg) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i..].trim_matches([' ', '\t'])),
        None => (line, ""),
    };
    if interp.is_empty() {
        return Content::Other;
    }
    Content::Script {
        interp: interp.to_string(),
        arg: (!arg.is_empty()).then(|| arg.to_string()),
    }
}

/// A forward-only reader that keeps the bytes from the start up to where
/// it was asked to keep them.
struct Stream<'a> {
    r: &'a mut dyn Read,
    size: u64,
    /// Bytes `[0, kept.len())`, when nothing was skipped before them.
    kept: Vec<u8>,
    /// Bytes consumed from `r`.
    pos: u64,
}

impl Stream<'_> {
    /// Keep bytes up to `end` (or the end of the file), if nothing was
    /// skipped yet.
    fn keep_to(&mut self, end: u64) -> io::Result<()> {
        let end = end.min(self.size);
        if self.pos != self.kept.len() as u64 || end <= self.pos {
            return Ok(());
        }
        let want = (end - self.pos) as usize;
        let start = self.kept.len();
        self.kept.resize(start + want, 0);
        self.r.read_exact(&mut self.kept[start..])?;
        self.pos = end;
        Ok(())
    }

    /// Bytes `[off, off + len)`: kept ones, or read on after skipping;
    /// `None` when they are behind and were not kept, or past the end.
    fn range(&mut self, off: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(end) = off.checked_add(len).filter(|e| *e <= self.size) else {
            return Ok(None);
        };
        if end <= KEEP.max(self.kept.len() as u64) {
            self.keep_to(end)?;
        }
        if end <= self.kept.len() as u64 {
            return Ok(Some(self.kept[off as usize..end as usize].to_vec()));
        }
        if off < self.pos {
            return Ok(None);
        }
        // What lies before is kept (up to KEEP) for the string table.
        self.keep_to(off.min(KEEP))?;
        io::copy(&mut (&mut *self.r).take(off - self.pos), &mut io::sink())?;
        let mut buf = vec![0; len as usize];
        self.r.read_exact(&mut buf)?;
        self.pos = end;
        Ok(Some(buf))
    }
}

/// Byte order and word size of an ELF file.
#[derive(Clone, Copy)]
struct Layout {
    wide: bool,
    big: bool,
}

impl Layout {
    fn uint(&self, b: &[u8], off: usize, n: usize) -> Option<u64> {
        let s = b.get(off..off + n)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if self.big { s[i] } else { s[n - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    }
    /// A word (`Elf64_Addr`/`Off`/`Xword` or their 32-bit forms).
    fn word(&self, b: &[u8], off: usize) -> Option<u64> {
        self.uint(b, off, if self.wide { 8 } else { 4 })
    }
}

/// One program header: type, file offset, address, file size.
#[derive(Clone, Copy)]
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// The program headers of the ELF file whose header `s` has kept.
fn segments(s: &mut Stream, l: Layout) -> io::Result<Option<Vec<Segment>>> {
    let h = s.kept.clone();
    let (phoff, entsize, num) = match l.wide {
        true => (l.word(&h, 32), l.uint(&h, 54, 2), l.uint(&h, 56, 2)),
        false => (l.word(&h, 28), l.uint(&h, 42, 2), l.uint(&h, 44, 2)),
    };
    let (Some(phoff), Some(entsize), Some(num)) = (phoff, entsize, num) else {
        return Ok(None);
    };
    if entsize < if l.wide { 56 } else { 32 } || entsize * num > MAX_TABLE {
        return Ok(None);
    }
    let Some(table) = s.range(phoff, entsize * num)? else {
        return Ok(None);
    };
    let one = |b: &[u8]| -> Option<Segment> {
        Some(match l.wide {
            true => Segment {
                kind: l.uint(b, 0, 4)? as u32,
                offset: l.word(b, 8)?,
                vaddr: l.word(b, 16)?,
                filesz: l.word(b, 32)?,
            },
            false => Segment {
                kind: l.uint(b, 0, 4)? as u32,
                offset: l.word(b, 4)?,
                vaddr: l.word(b, 8)?,
                filesz: l.word(b, 16)?,
            },
        })
    };
    Ok(table.chunks(entsize as usize).map(one).collect())
}

/// The interpreter and dynamic entries of an ELF file, or `None` when it is
/// not an executable or shared object, or cannot be read.
fn read_elf(s: &mut Stream) -> io::Result<Option<ElfInfo>> {
    let h = &s.kept;
    if h.len() < 64 || !matches!(h[4], 1 | 2) || !matches!(h[5], 1 | 2) {
        return Ok(None);
    }
    let l = Layout {
        wide: h[4] == 2,
        big: h[5] == 2,
    };
    if !l
        .uint(h, 16, 2)
        .is_some_and(|t| t == u64::from(ET_EXEC) || t == u64::from(ET_DYN))
    {
        return Ok(None);
    }
    let Some(mut segs) = segments(s, l)? else {
        return Ok(None);
    };
    // Read in file order: the stream only goes forward.
    segs.sort_by_key(|g| g.offset);
    let mut info = ElfInfo::default();
    for g in segs
        .iter()
        .filter(|g| g.kind == PT_INTERP || g.kind == PT_DYNAMIC)
    {
        if g.filesz > MAX_TABLE {
            return Ok(None);
        }
        let Some(bytes) = s.range(g.offset, g.filesz)? else {
            return Ok(None);
        };
        if g.kind == PT_INTERP {
            info.interp = Some(cstr(&bytes, 0));
        } else if !dynamic(s, l, &bytes, &segs, &mut info)? {
            return Ok(None);
        }
    }
    Ok(Some(info))
}

/// Fill `info` from the dynamic segment `dynseg`; false when its string
/// table cannot be read.
fn dynamic(
    s: &mut Stream,
    l: Layout,
    dynseg: &[u8],
    segs: &[Segment],
    info: &mut ElfInfo,
) -> io::Result<bool> {
    let step = if l.wide { 16 } else { 8 };
    let mut entries = Vec::new();
    let (mut strtab, mut strsz) = (None, None);
    for e in dynseg.chunks_exact(step) {
        let (Some(tag), Some(val)) = (l.word(e, 0), l.word(e, step / 2)) else {
            break;
        };
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(val),
            DT_STRSZ => strsz = Some(val),
            DT_NEEDED | DT_RUNPATH | DT_RPATH => entries.push((tag, val)),
            _ => {}
        }
    }
    if entries.is_empty() {
        return Ok(true);
    }
    let (Some(addr), Some(size)) = (strtab, strsz.filter(|n| *n <= MAX_TABLE)) else {
        return Ok(false);
    };
    // The string table's address, as a file offset (through PT_LOAD).
    let Some(off) = segs
        .iter()
        .filter(|g| g.kind == PT_LOAD && g.vaddr <= addr && addr - g.vaddr < g.filesz)
        .map(|g| g.offset + (addr - g.vaddr))
        .next()
    else {
        return Ok(false);
    };
    let Some(table) = s.range(off, size)? else {
        return Ok(false);
    };
    for (tag, val) in entries {
        let text = cstr(&table, val as usize);
        let split = || text.split(':').map(str::to_string).collect::<Vec<_>>();
        match tag {
            DT_NEEDED if !text.is_empty() => info.needed.push(text.clone()),
            DT_NEEDED => {}
            DT_RUNPATH => info.runpath.extend(split()),
            _ => info.rpath.extend(split()),
        }
    }
    Ok(true)
}

/// The NUL-terminated string at `off` of `b` (lossy UTF-8).
fn cstr(b: &[u8], off: usize) -> String {
    let s = b.get(off..).unwrap_or_default();
    let end = s.iter().position(|c| *c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// Test helpers: minimal ELF files.
#[cfg(test)]
pub mod testelf {
    /// A little-endian ELF64 file: `interp`, then `needed`, `runpath`
    /// and `rpath` in its dynamic section, and `pad` bytes of "code"
    /// between the string table and the dynamic segment.
    pub fn elf64(
        interp: Option<&str>,
        needed: &[&str],
        runpath: Option<&str>,
        rpath: Option<&str>,
        pad: usize,
    ) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut add = |s: &str| {
            let o = strtab.len() as u64;
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            o
        };
        let mut dynv: Vec<(u64, u64)> = needed.iter().map(|n| (1, add(n))).collect();
        if let Some(r) = runpath {
            dynv.push((29, add(r)));
        }
        if let Some(r) = rpath {
            dynv.push((15, add(r)));
        }
        let nph = 4u64;
        let interp_off = 64 + 56 * nph;
        let interp_b: Vec<u8> = interp
            .map(|i| [i.as_bytes(), b"\0"].concat())
            .unwrap_or_default();
        let str_off = interp_off + interp_b.len() as u64;
        let dyn_off = str_off + strtab.len() as u64 + pad as u64;
        dynv.push((5, str_off)); // DT_STRTAB: vaddr == offset (one PT_LOAD at 0)
        dynv.push((10, strtab.len() as u64));
        dynv.push((0, 0));
        let total = dyn_off + 16 * dynv.len() as u64;
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        f.extend_from_slice(&62u16.to_le_bytes()); // x86-64
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes()); // entry
        f.extend_from_slice(&64u64.to_le_bytes()); // phoff
        f.extend_from_slice(&0u64.to_le_bytes()); // shoff
        f.extend_from_slice(&0u32.to_le_bytes()); // flags
        for v in [64u16, 56, nph as u16, 64, 0, 0] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        let mut ph = |kind: u32, off: u64, size: u64| {
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&4u32.to_le_bytes());
            for v in [off, off, off, size, size, 8] {
                f.extend_from_slice(&v.to_le_bytes());
            }
        };
        ph(1, 0, total); // PT_LOAD
        match interp {
            Some(_) => ph(3, interp_off, interp_b.len() as u64),
            None => ph(4, 0, 0), // PT_NOTE
        }
        ph(2, dyn_off, 16 * dynv.len() as u64);
        ph(4, 0, 0);
        f.extend_from_slice(&interp_b);
        f.extend_from_slice(&strtab);
        f.resize(f.len() + pad, 0x90);
        for (t, v) in dynv {
            f.extend_from_slice(&t.to_le_bytes());
            f.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(f.len() as u64, total);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &[u8]) -> Content {
        read_content(&mut &b[..], b.len() as u64).unwrap()
    }

    #[test]
    fn shebangs_split_as_the_kernel_does() {
        let s = |i: &str, a: Option<&str>| Content::Script {
            interp: i.into(),
            arg: a.map(str::to_string),
        };
        assert_eq!(read(b"#!/bin/sh\necho\n"), s("/bin/sh", None));
        assert_eq!(
            read(b"#! /usr/bin/env  python3 -u \n"),
            s("/usr/bin/env", Some("python3 -u"))
        );
        assert_eq!(read(b"#!/bin/sh\r\n"), s("/bin/sh", None));
        assert_eq!(read(b"#!\n"), Content::Other);
        assert_eq!(read(b"plain text"), Content::Other);
        assert_eq!(read(b""), Content::Other);
    }

    #[test]
    fn elf_interpreter_needed_and_paths_are_read() {
        let b = testelf::elf64(
            Some("/lib64/ld-linux-x86-64.so.2"),
            &["libz.so.1", "libc.so.6"],
            Some("$ORIGIN/../lib:/opt/x"),
            None,
            1000,
        );
        let Content::Elf(e) = read(&b) else { panic!() };
        assert_eq!(e.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(e.needed, ["libz.so.1", "libc.so.6"]);
        assert_eq!(e.runpath, ["$ORIGIN/../lib", "/opt/x"]);
        assert!(e.rpath.is_empty());
    }

    #[test]
    fn a_dynamic_segment_past_what_is_kept_is_reached_by_skipping() {
        let b = testelf::elf64(None, &["libm.so.6"], None, Some("/r"), KEEP as usize + 10);
        let Content::Elf(e) = read(&b) else { panic!() };
        assert_eq!(
            (e.interp, e.needed, e.rpath),
            (None, vec!["libm.so.6".to_string()], vec!["/r".to_string()])
        );
    }

    #[test]
    fn truncated_or_malformed_elf_is_other_never_an_error() {
        let b = testelf::elf64(None, &["libm.so.6"], None, None, 10);
        for n in [4, 20, 64, 100, b.len() - 1] {
            let mut cut = b[..n].to_vec();
            // The header says more than there is: read as far as the size.
            assert!(
                matches!(read_content(&mut &cut[..], n as u64), Ok(Content::Other)),
                "{n}"
            );
            cut.resize(b.len(), 0);
            let _ = read_content(&mut &cut[..], b.len() as u64).unwrap();
        }
    }
}
