//! Reading Debian binary packages (`.deb`) without dpkg.
//!
//! A `.deb` is an `ar` archive holding `debian-binary`, `control.tar.*` and
//! `data.tar.*`. This module opens one, checks its shape, and hands out:
//!
//! * [`read_control`]: the control stanza (raw text and parsed fields) and the
//!   `md5sums` file from `control.tar`;
//! * [`with_data_tar`]: a streaming `tar::Archive` over the decompressed
//!   `data.tar`, so callers never hold the package in memory;
//! * [`read_data_file`]: the bytes of one (small) file of `data.tar`, used for
//!   `/usr/share/doc/<pkg>/copyright`.
//!
//! Every package is untrusted input: decompressed sizes are capped
//! ([`Limits`]), and errors name the package file and what was wrong with it.

use std::fs::File;
use std::io::{self, BufReader, Read};
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
    #[error(
        "{path}: {member} exceeds the size limit of {limit} bytes after decompression\nhelp: the package may be a decompression bomb; if it is genuine, raise the limit"
    )]
    TooLarge {
        path: PathBuf,
        member: String,
        limit: u64,
    },
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

/// Caps on decompressed sizes, so a hostile package cannot exhaust memory or disk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest decompressed `control.tar` accepted.
    pub control_bytes: u64,
    /// Largest decompressed `data.tar` accepted.
    pub data_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            control_bytes: 64 << 20,
            data_bytes: 8 << 30,
        }
    }
}

/// The control information of a package.
#[derive(Debug, Clone)]
pub struct ControlInfo {
    /// The `control` file exactly as shipped (trailing blank lines trimmed).
    pub stanza: String,
    /// Parsed fields of `control`.
    pub fields: deb822_fast::Paragraph,
    /// The `md5sums` file, when the package has one.
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
    } else if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(BufReader::new(
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

fn member_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.trim_end_matches('/').to_string()
}

/// Walk the ar members of `path`, calling `f` on `control.tar*` or `data.tar*`
/// (whichever `want` names) with a decompressed, size-capped reader.
fn with_member<T, E: std::convert::From<DebError>>(
    path: &Path,
    want: &str,
    limit: u64,
    f: &mut dyn FnMut(&mut dyn Read, &str) -> Result<T, E>,
) -> Result<T, E> {
    let file = File::open(path).map_err(|e| DebError::io(path, e))?;
    let mut ar = ar::Archive::new(BufReader::new(file));
    let mut index = 0usize;
    while let Some(entry) = ar.next_entry() {
        let entry = entry.map_err(|e| DebError::malformed(path, format!("bad ar archive: {e}")))?;
        let name = member_name(entry.header().identifier());
        if index == 0 && name != "debian-binary" {
            return Err(DebError::malformed(
                path,
                format!("first member is {name:?}, expected \"debian-binary\""),
            )
            .into());
        }
        index += 1;
        if name.starts_with(want) {
            let reader = decompressor(&name, Box::new(entry), path)?;
            let mut capped = Capped {
                inner: reader,
                left: limit,
            };
            return f(&mut capped, &name);
        }
    }
    if index == 0 {
        return Err(DebError::malformed(path, "empty ar archive").into());
    }
    Err(DebError::malformed(path, format!("no {want}* member")).into())
}

/// Map an io error from inside a member to a [`DebError`].
pub(crate) fn member_error(path: &Path, member: &str, limit: u64, e: io::Error) -> DebError {
    if is_limit(&e) {
        DebError::TooLarge {
            path: path.to_path_buf(),
            member: member.to_string(),
            limit,
        }
    } else {
        DebError::malformed(path, format!("{member}: {e}"))
    }
}

/// Read the `control` stanza and `md5sums` of a package.
pub fn read_control(path: &Path, limits: &Limits) -> Result<ControlInfo, DebError> {
    let limit = limits.control_bytes;
    with_member(path, "control.tar", limit, &mut |reader, member| {
        let mut archive = tar::Archive::new(reader);
        let mut control = None;
        let mut md5sums = None;
        let entries = archive
            .entries()
            .map_err(|e| member_error(path, member, limit, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| member_error(path, member, limit, e))?;
            let name = entry
                .path()
                .map_err(|e| member_error(path, member, limit, e))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if name == "control" || name == "md5sums" {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| member_error(path, member, limit, e))?;
                if name == "control" {
                    control = Some(text);
                } else {
                    md5sums = Some(text);
                }
            }
        }
        let text =
            control.ok_or_else(|| DebError::malformed(path, "control.tar has no control file"))?;
        let stanza = text.trim_end().to_string();
        let fields: deb822_fast::Paragraph = stanza
            .parse()
            .map_err(|e| DebError::malformed(path, format!("unparsable control file: {e:?}")))?;
        for required in ["Package", "Version", "Architecture"] {
            if fields.get(required).is_none() {
                return Err(DebError::malformed(
                    path,
                    format!("control file has no {required} field"),
                ));
            }
        }
        Ok(ControlInfo {
            stanza,
            fields,
            md5sums,
        })
    })
}

/// Every regular file of `control.tar` (maintainer scripts, `templates`,
/// `triggers`, ...) by name, within `limits.control_bytes`.
pub fn read_control_files(
    path: &Path,
    limits: &Limits,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, DebError> {
    let limit = limits.control_bytes;
    with_member(path, "control.tar", limit, &mut |reader, member| {
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
    })
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
    let limit = limits.data_bytes;
    let mut f = Some(f);
    with_member(path, "data.tar", limit, &mut |reader, member| {
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
pub fn read_data_files(
    path: &Path,
    limits: &Limits,
    wanted: &dyn Fn(&str) -> bool,
    max_file: u64,
) -> Result<Vec<(String, DataFile)>, DebError> {
    with_data_tar(path, limits, |dt| {
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
