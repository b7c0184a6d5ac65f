//! Reading Debian binary packages (`.deb`) without dpkg.
//!
//! A `.deb` is an `ar` archive holding `debian-binary`, `control.tar.*` and
//! `data.tar.*`. This module opens one, checks its shape as dpkg does
//! (module [`ar`]), and hands out:
//!
//! * [`read_control`]: the control stanza, parsed strictly (module
//!   [`control`]), and the validated `md5sums` file from `control.tar`;
//! * [`check_identity`]: the stanza must name the package the index named;
//! * [`with_data_tar`]: a streaming `tar::Archive` over the decompressed
//!   `data.tar`, so callers never hold the package in memory;
//! * [`read_data_file`]: the bytes of one (small) file of `data.tar`, used for
//!   `/usr/share/doc/<pkg>/copyright`.
//!
//! Every package is untrusted input: decompressed sizes, long-name and PAX
//! records and the number of entries are capped ([`Limits`], module
//! [`targuard`]), and errors name the package file and what was wrong with
//! it. The `*_from` variants read from any seekable source (fuzzing).

pub mod ar;
pub mod control;
pub mod plain;
pub mod targuard;

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Errors from reading a `.deb`. Each carries the package path.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error(
        "cannot read package {path}: {source}\nhelp: check that the file exists and is readable"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a valid .deb: {reason}\nhelp: the file is corrupt or not a Debian package; delete it and fetch it again"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: {refusal}")]
    Refused {
        path: PathBuf,
        refusal: Box<Refusal>,
    },
    #[error(
        "{path}: the control file is refused: {reason}\nhelp: dpkg refuses it too; scanners read such a stanza differently, so it could forge package metadata: fetch the package from a trusted source"
    )]
    Control { path: PathBuf, reason: String },
    #[error(
        "{path}: the control file says {mismatch}\nhelp: the package file or the mirror's index is forged or mixed up: fetch the package from a trusted source, then run `imgforge lock` again"
    )]
    Forged {
        path: PathBuf,
        mismatch: Box<Mismatch>,
    },
    #[error(
        "{path}: {member} exceeds the size limit of {limit} bytes after decompression\nhelp: the package may be a decompression bomb; if it is genuine, raise the limit"
    )]
    TooLarge {
        path: PathBuf,
        member: String,
        limit: u64,
    },
}

/// Why a member was refused by the tar guard, with a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub member: String,
    pub reason: String,
    pub help: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is refused: {}\nhelp: {}",
            self.member, self.reason, self.help
        )
    }
}

/// A control field that differs from the locked index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub package: String,
    pub field: &'static str,
    pub found: String,
    pub expected: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}, but the locked index entry for {} says {:?}",
            self.field, self.found, self.package, self.expected
        )
    }
}

impl DebError {
    fn malformed(path: &Path, reason: impl Into<String>) -> Self {
        DebError::Malformed {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    fn io(path: &Path, source: io::Error) -> Self {
        DebError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Caps on what one package may make imgforge read or hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest decompressed `control.tar` accepted.
    pub control_bytes: u64,
    /// Largest decompressed `data.tar` accepted.
    pub data_bytes: u64,
    /// Most entries in `data.tar`: a guard against hostile packages (layers
    /// are sorted on disk, but the license scan holds each path once).
    pub entries: u64,
    /// Largest GNU long-name/long-link or PAX record.
    pub meta_bytes: u64,
    /// Not a limit, but it travels with them to every reader: where one
    /// build keeps decompressed `data.tar` copies (module [`plain`]).
    pub plain: Option<std::sync::Arc<plain::PlainCache>>,
}

/// Default for [`Limits::entries`]: far above any Debian package (the
/// largest in bookworm have a few tens of thousands of files).
pub const DEFAULT_MAX_ENTRIES: u64 = 200_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            control_bytes: 64 << 20,
            data_bytes: 8 << 30,
            entries: DEFAULT_MAX_ENTRIES,
            meta_bytes: 4096,
            plain: None,
        }
    }
}

/// The control information of a package.
#[derive(Debug, Clone)]
pub struct ControlInfo {
    /// The control stanza rebuilt from validated fields (no `Status`,
    /// no trailing newline).
    pub stanza: String,
    /// The same fields, as a paragraph.
    pub fields: deb822_fast::Paragraph,
    /// The `md5sums` file, validated and re-rendered, when the package has one.
    pub md5sums: Option<String>,
}

impl ControlInfo {
    /// A field of the control stanza.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name)
    }
}

/// Compression of a member, from its name suffix.
fn decompressor<'a>(
    name: &str,
    reader: Box<dyn Read + 'a>,
    path: &Path,
) -> Result<Box<dyn Read + 'a>, DebError> {
    let r: Box<dyn Read + 'a> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(reader)))
    } else if name.ends_with(".xz") || name.ends_with(".lzma") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(BufReader::new(
            reader,
        )))
    } else if name.ends_with(".zst") {
        Box::new(
            zstd::stream::read::Decoder::new(reader)
                .map_err(|e| DebError::malformed(path, format!("bad zstd stream: {e}")))?,
        )
    } else if name.ends_with(".bz2") {
        Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(reader)))
    } else if name.ends_with(".tar") {
        reader
    } else {
        return Err(DebError::malformed(
            path,
            format!("unsupported member compression: {name}"),
        ));
    };
    Ok(r)
}

/// A reader that fails once more than `limit` bytes have been read.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(SizeLimitHit));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct SizeLimitHit;
impl std::fmt::Display for SizeLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed size limit exceeded")
    }
}
impl std::error::Error for SizeLimitHit {}

/// Whether an io error came from a [`Capped`] reader.
fn is_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<SizeLimitHit>())
}

/// Which member [`with_member`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Control,
    Data,
}

/// Check the ar structure of `src` (`len` bytes), then call `f` on the
/// control or data member with a decompressed, size-capped, guarded reader.
fn with_member<S: Read + Seek, T, E: std::convert::From<DebError>>(
    src: &mut S,
    len: u64,
    path: &Path,
    want: Want,
    limits: &Limits,
    f: &mut dyn FnMut(&mut dyn Read, &str) -> Result<T, E>,
) -> Result<T, E> {
    if want == Want::Data
        && let Some(cache) = &limits.plain
        && let Some((copy, member)) = cache.open(path)
    {
        let capped = Capped {
            inner: Box::new(BufReader::new(copy)) as Box<dyn Read>,
            left: limits.data_bytes,
        };
        let mut guarded = guard(capped, limits.entries, limits);
        return f(&mut guarded, &member);
    }
    let layout = ar::layout(src, len).map_err(|r| DebError::malformed(path, r))?;
    let (m, limit) = match want {
        Want::Control => (&layout.control, limits.control_bytes),
        Want::Data => (&layout.data, limits.data_bytes),
    };
    src.seek(SeekFrom::Start(m.offset))
        .map_err(|e| DebError::io(path, e))?;
    let raw: Box<dyn Read + '_> = Box::new(BufReader::new(src.take(m.size)));
    let reader = decompressor(&m.name, raw, path)?;
    let capped = Capped {
        inner: reader,
        left: limit,
    };
    let (entries, cache) = match want {
        Want::Control => (64, None),
        Want::Data => (limits.entries, limits.plain.as_deref()),
    };
    let tee = plain::Tee {
        inner: capped,
        out: cache.and_then(|c| c.start()),
    };
    let mut guarded = guard(tee, entries, limits);
    let r = f(&mut guarded, &m.name);
    if r.is_ok()
        && let Some(c) = cache
    {
        guarded.into_inner().finish(c, path, &m.name);
    }
    r
}

fn guard<R: Read>(r: R, entries: u64, limits: &Limits) -> targuard::TarGuard<R> {
    targuard::TarGuard::new(
        r,
        targuard::TarLimits {
            meta_bytes: limits.meta_bytes,
            entries,
        },
    )
}

/// Map an io error from inside a member to a [`DebError`].
pub(crate) fn member_error(path: &Path, member: &str, limit: u64, e: io::Error) -> DebError {
    if is_limit(&e) {
        DebError::TooLarge {
            path: path.to_path_buf(),
            member: member.to_string(),
            limit,
        }
    } else if let Some(v) = targuard::violation(&e) {
        let help = match v {
            targuard::Violation::Entries { .. } => {
                "memory grows with the entries of a package: if the package is genuine, raise the cap (imgforge build --max-package-entries N)"
            }
            _ => {
                "dpkg would refuse this archive too; fetch the package again from a trusted source"
            }
        };
        DebError::Refused {
            path: path.to_path_buf(),
            refusal: Box::new(Refusal {
                member: member.to_string(),
                reason: v.to_string(),
                help,
            }),
        }
    } else {
        DebError::malformed(path, format!("{member}: {e}"))
    }
}

/// Read the `control` stanza and `md5sums` of a package.
pub fn read_control(path: &Path, limits: &Limits) -> Result<ControlInfo, DebError> {
    let mut file = File::open(path).map_err(|e| DebError::io(path, e))?;
    let len = file.metadata().map_err(|e| DebError::io(path, e))?.len();
    read_control_from(&mut file, len, path, limits)
}

/// [`read_control`] over any seekable source of `len` bytes; `path` only
/// labels errors.
pub fn read_control_from<S: Read + Seek>(
    src: &mut S,
    len: u64,
    path: &Path,
    limits: &Limits,
) -> Result<ControlInfo, DebError> {
    let limit = limits.control_bytes;
    with_member(
        src,
        len,
        path,
        Want::Control,
        limits,
        &mut |reader, member| {
            let merr = |e| member_error(path, member, limit, e);
            let mut archive = tar::Archive::new(reader);
            let (mut control, mut md5sums) = (None, None);
            for entry in archive.entries().map_err(merr)? {
                let entry = entry.map_err(merr)?;
                let raw = entry.path_bytes();
                let name = raw.strip_prefix(b"./").unwrap_or(&raw);
                let slot = match name {
                    b"control" => &mut control,
                    b"md5sums" => &mut md5sums,
                    _ => continue,
                };
                if slot.is_some() {
                    return Err(DebError::malformed(
                        path,
                        format!(
                            "control.tar has two {:?} files",
                            String::from_utf8_lossy(name)
                        ),
                    ));
                }
                if !entry.header().entry_type().is_file() {
                    return Err(DebError::malformed(
                        path,
                        "control or md5sums is not a regular file",
                    ));
                }
                let cap = if name == b"control" {
                    control::MAX_CONTROL
                } else {
                    limit
                };
                let mut buf = Vec::new();
                entry.take(cap + 1).read_to_end(&mut buf).map_err(merr)?;
                if buf.len() as u64 > cap {
                    return Err(DebError::malformed(path, "the control file is over 1 MiB"));
                }
                *slot = Some(buf);
            }
            let text = control
                .ok_or_else(|| DebError::malformed(path, "control.tar has no control file"))?;
            let mut parsed = control::parse(&text).map_err(|reason| DebError::Control {
                path: path.to_path_buf(),
                reason,
            })?;
            // dpkg's status is imgforge's to state, never the package's.
            parsed
                .fields
                .retain(|f| !f.name.eq_ignore_ascii_case("Status"));
            let md5sums = md5sums
                .map(|m| control::parse_md5sums(&m))
                .transpose()
                .map_err(|reason| DebError::Control {
                    path: path.to_path_buf(),
                    reason,
                })?;
            Ok(ControlInfo {
                stanza: parsed.render(),
                fields: parsed.paragraph(),
                md5sums,
            })
        },
    )
}

/// What the index said a package is; its control file must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// Source name and version as the index derives them.
    pub source: String,
    pub source_version: String,
}

impl ControlInfo {
    /// The identity this control file claims (source derived as dpkg does).
    pub fn identity(&self) -> Identity {
        let f = |n: &str| self.get(n).unwrap_or("").trim().to_string();
        let (package, version) = (f("Package"), f("Version"));
        let (source, source_version) = match self.get("Source").map(str::trim) {
            None => (package.clone(), version.clone()),
            Some(s) => match s.split_once('(') {
                Some((n, v)) => (
                    n.trim().to_string(),
                    v.trim_end_matches(')').trim().to_string(),
                ),
                None => (s.to_string(), version.clone()),
            },
        };
        Identity {
            package,
            version,
            architecture: f("Architecture"),
            source,
            source_version,
        }
    }
}

/// The control file of `path` must name exactly the package the locked
/// index entry named: a mismatch means the file or the mirror is forged.
pub fn check_identity(path: &Path, ctl: &ControlInfo, expected: &Identity) -> Result<(), DebError> {
    let got = ctl.identity();
    let pairs = [
        ("Package", &got.package, &expected.package),
        ("Version", &got.version, &expected.version),
        ("Architecture", &got.architecture, &expected.architecture),
        ("Source", &got.source, &expected.source),
        (
            "Source version",
            &got.source_version,
            &expected.source_version,
        ),
    ];
    for (field, found, want) in pairs {
        if found != want {
            return Err(DebError::Forged {
                path: path.to_path_buf(),
                mismatch: Box::new(Mismatch {
                    package: expected.package.clone(),
                    field,
                    found: found.clone(),
                    expected: want.clone(),
                }),
            });
        }
    }
    Ok(())
}

/// Every regular file of `control.tar` (maintainer scripts, `templates`,
/// `triggers`, ...) by name, within `limits.control_bytes`.
pub fn read_control_files(
    path: &Path,
    limits: &Limits,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, DebError> {
    let limit = limits.control_bytes;
    let mut file = File::open(path).map_err(|e| DebError::io(path, e))?;
    let len = file.metadata().map_err(|e| DebError::io(path, e))?.len();
    with_member(
        &mut file,
        len,
        path,
        Want::Control,
        limits,
        &mut |reader, member| {
            let mut out = std::collections::BTreeMap::new();
            let mut archive = tar::Archive::new(reader);
            let entries = archive
                .entries()
                .map_err(|e| member_error(path, member, limit, e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| member_error(path, member, limit, e))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = entry
                    .path()
                    .map_err(|e| member_error(path, member, limit, e))?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_string();
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| member_error(path, member, limit, e))?;
                out.insert(name, bytes);
            }
            Ok(out)
        },
    )
}

/// Stream the package's `data.tar` through `f`.
///
/// The archive is decompressed on the fly and capped at `limits.data_bytes`;
/// io errors raised inside `f` while reading entries should be mapped with
/// the returned member name (see [`DataTar::error`]).
pub fn with_data_tar<T, E: std::convert::From<DebError>>(
    path: &Path,
    limits: &Limits,
    f: impl FnOnce(&mut DataTar<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let mut file = File::open(path).map_err(|e| DebError::io(path, e))?;
    let len = file.metadata().map_err(|e| DebError::io(path, e))?.len();
    with_data_tar_from(&mut file, len, path, limits, f)
}

/// [`with_data_tar`] over any seekable source of `len` bytes.
pub fn with_data_tar_from<S: Read + Seek, T, E: std::convert::From<DebError>>(
    src: &mut S,
    len: u64,
    path: &Path,
    limits: &Limits,
    f: impl FnOnce(&mut DataTar<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let limit = limits.data_bytes;
    let mut f = Some(f);
    with_member(src, len, path, Want::Data, limits, &mut |reader, member| {
        let mut dt = DataTar {
            archive: tar::Archive::new(reader),
            ctx: MemberCtx {
                path: path.to_path_buf(),
                member: member.to_string(),
                limit,
            },
        };
        (f.take().expect("called once"))(&mut dt)
    })
}

/// A streaming view of a package's `data.tar`.
pub struct DataTar<'a> {
    /// The tar archive, read front to back.
    pub archive: tar::Archive<&'a mut dyn Read>,
    /// Where errors point.
    pub ctx: MemberCtx,
}

/// The package and member an error refers to.
#[derive(Debug, Clone)]
pub struct MemberCtx {
    path: PathBuf,
    member: String,
    limit: u64,
}

impl MemberCtx {
    /// Turn an io error met while reading the archive into a [`DebError`]
    /// naming the package (and saying so when the size cap was hit).
    pub fn error(&self, e: io::Error) -> DebError {
        member_error(&self.path, &self.member, self.limit, e)
    }
    /// The package file.
    pub fn package_path(&self) -> &Path {
        &self.path
    }
}

/// Normalize a path from `data.tar`: strip `./` and a leading `/`.
///
/// Returns `None` for the root itself. Rejection of `..` and other hostile
/// names is the layer builder's job.
pub fn strip_data_prefix(p: &str) -> Option<&str> {
    let p = p.strip_prefix("./").unwrap_or(p);
    let p = p.trim_start_matches('/');
    let p = p.trim_end_matches('/');
    if p.is_empty() || p == "." {
        None
    } else {
        Some(p)
    }
}

/// What [`read_data_file`] found at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFile {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symlink with this target.
    Symlink(String),
}

/// Read the entries of `data.tar` whose normalized paths are in `wanted`
/// (files up to `max_file` bytes; larger ones are skipped). Also reports
/// symlinks at those paths or at their parent directories, so callers can
/// follow a symlinked `/usr/share/doc/<pkg>`.
///
/// Only the wanted entries are held, so the entry cap (a memory bound for
/// readers that keep every entry, see [`Limits::entries`]) does not apply:
/// these readers (license scan, release and changelog checks) take the
/// default limits and must not refuse a package the build's own cap
/// (`--max-package-entries`) accepted.
pub fn read_data_files(
    path: &Path,
    limits: &Limits,
    wanted: &dyn Fn(&str) -> bool,
    max_file: u64,
) -> Result<Vec<(String, DataFile)>, DebError> {
    let limits = Limits {
        entries: u64::MAX,
        ..limits.clone()
    };
    with_data_tar(path, &limits, |dt| {
        let mut out = Vec::new();
        let entries = dt.archive.entries().map_err(|e| dt.ctx.error(e))?;
        let mut errs = None;
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errs = Some(e);
                    break;
                }
            };
            let raw = match entry.path() {
                Ok(p) => p.to_string_lossy().to_string(),
                Err(e) => {
                    errs = Some(e);
                    break;
                }
            };
            let Some(name) = strip_data_prefix(&raw) else {
                continue;
            };
            if !wanted(name) {
                continue;
            }
            let name = name.to_string();
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().to_string())
                    .unwrap_or_default();
                out.push((name, DataFile::Symlink(target)));
            } else if kind.is_file() && entry.size() <= max_file {
                let mut buf = Vec::with_capacity(entry.size() as usize);
                if let Err(e) = entry.read_to_end(&mut buf) {
                    errs = Some(e);
                    break;
                }
                out.push((name, DataFile::File(buf)));
            }
        }
        if let Some(e) = errs {
            return Err(dt.ctx.error(e));
        }
        Ok(out)
    })
}

/// Read one small file (or symlink) of `data.tar`, by normalized path
/// (e.g. `usr/share/doc/zlib1g/copyright`).
pub fn read_data_file(
    path: &Path,
    limits: &Limits,
    name: &str,
) -> Result<Option<DataFile>, DebError> {
    let found = read_data_files(path, limits, &|p| p == name, 16 << 20)?;
    Ok(found.into_iter().next().map(|(_, f)| f))
}

/// Read everything a build reads from a package held in memory: the ar
/// structure, the control data, and every `data.tar` entry (names, links,
/// headers, contents). Returns the number of entries. The entry point of
/// the `deb` fuzz target and of the corpus replay test.
pub fn read_everything(bytes: &[u8], limits: &Limits) -> Result<usize, DebError> {
    let path = Path::new("input.deb");
    let len = bytes.len() as u64;
    let ctl = read_control_from(&mut io::Cursor::new(bytes), len, path, limits)?;
    let _ = (ctl.identity(), ctl.stanza.len());
    with_data_tar_from(
        &mut io::Cursor::new(bytes),
        len,
        path,
        limits,
        |dt| -> Result<usize, DebError> {
            let mut n = 0;
            for entry in dt.archive.entries().map_err(|e| dt.ctx.error(e))? {
                let mut entry = entry.map_err(|e| dt.ctx.error(e))?;
                let _ = (entry.path_bytes().len(), entry.link_name_bytes());
                let h = entry.header();
                let _ = (h.mode(), h.uid(), h.gid(), h.mtime(), h.entry_type());
                io::copy(&mut entry, &mut io::sink()).map_err(|e| dt.ctx.error(e))?;
                n += 1;
            }
            Ok(n)
        },
    )
}
