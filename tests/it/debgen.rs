//! Synthetic `.deb` files for edge and hostile cases, and flat mirrors of them.
//!
//! Entries are written with raw tar headers, so names the `tar` crate would
//! refuse to write (`../x`, absolute paths) can be produced on purpose.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// One entry of a synthetic `data.tar`.
#[derive(Debug, Clone)]
pub enum T {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8], u32),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    CharDev(&'static str),
    /// A file with a name written byte for byte (hostile names).
    RawFile(Vec<u8>, &'static [u8]),
}

/// A synthetic package.
#[derive(Debug, Clone)]
pub struct Deb {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Extra control fields, e.g. ("Depends", "b (>= 1)").
    pub fields: Vec<(String, String)>,
    pub entries: Vec<T>,
    /// `gz`, `xz`, `zst` or `` (uncompressed).
    pub compression: &'static str,
    /// The `control` file written into the package instead of
    /// [`Deb::control`] (the index keeps the honest stanza).
    pub raw_control: Option<Vec<u8>>,
    /// Maintainer scripts (`postinst`, ...) in the control archive.
    pub scripts: Vec<(&'static str, String)>,
}

impl Deb {
    pub fn new(name: &str, version: &str) -> Deb {
        Deb {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            fields: vec![],
            entries: vec![T::Dir("./usr/", 0o755), T::Dir("./usr/share/", 0o755)],
            compression: "gz",
            raw_control: None,
            scripts: vec![],
        }
    }
    /// Ship this `control` file in the package (hostile control data).
    pub fn raw_control(mut self, text: impl Into<Vec<u8>>) -> Deb {
        self.raw_control = Some(text.into());
        self
    }
    /// Ship maintainer script `name` (e.g. `postinst`) with this body.
    pub fn script(mut self, name: &'static str, body: &str) -> Deb {
        self.scripts.push((name, body.into()));
        self
    }
    pub fn field(mut self, k: &str, v: &str) -> Deb {
        self.fields.push((k.into(), v.into()));
        self
    }
    pub fn entry(mut self, e: T) -> Deb {
        self.entries.push(e);
        self
    }
    pub fn compression(mut self, c: &'static str) -> Deb {
        self.compression = c;
        self
    }
    pub fn control(&self) -> String {
        let mut s = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <test@example.org>\n",
            self.name, self.version, self.arch
        );
        for (k, v) in &self.fields {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str("Description: synthetic test package\n");
        s
    }
    /// Write `<dir>/<name>_<version>_<arch>.deb`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        ));
        let text = self
            .raw_control
            .clone()
            .unwrap_or_else(|| self.control().into_bytes());
        let mut members = vec![(b"./control".to_vec(), text)];
        for (name, body) in &self.scripts {
            members.push((format!("./{name}").into_bytes(), body.clone().into_bytes()));
        }
        let control = tar_bytes(&members);
        let control = gz(&control);
        let data = data_tar(&self.entries);
        let (data_name, data) = match self.compression {
            "gz" => ("data.tar.gz", gz(&data)),
            "xz" => ("data.tar.xz", xz(&data)),
            "zst" => ("data.tar.zst", zstd::encode_all(&data[..], 3).unwrap()),
            _ => ("data.tar", data),
        };
        write_ar(
            &path,
            &[
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar.gz", control),
                (data_name, data),
            ],
        );
        path
    }
}

/// Write an ar archive with these members.
pub fn write_ar(path: &Path, members: &[(&str, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    let mut b = ar::Builder::new(f);
    for (name, data) in members {
        let mut h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        h.set_mode(0o100644);
        b.append(&h, &data[..]).unwrap();
    }
}

/// An ar archive written byte for byte: any name, and a size field that
/// may lie (`claimed`), so structural attacks can be produced.
pub fn raw_ar(members: &[(&[u8], Vec<u8>, Option<u64>)]) -> Vec<u8> {
    let mut v = b"!<arch>\n".to_vec();
    for (name, data, claimed) in members {
        let mut h = vec![b' '; 60];
        h[..name.len()].copy_from_slice(name);
        for (at, field) in [(16, "0"), (28, "0"), (34, "0"), (40, "100644")] {
            h[at..at + field.len()].copy_from_slice(field.as_bytes());
        }
        let size = claimed.unwrap_or(data.len() as u64).to_string();
        h[48..48 + size.len()].copy_from_slice(size.as_bytes());
        h[58..60].copy_from_slice(b"`\n");
        v.extend(h);
        v.extend(data);
        if data.len() % 2 == 1 {
            v.push(b'\n');
        }
    }
    v
}

/// A raw tar header block (GNU magic) for hostile streams.
pub fn tar_header(name: &[u8], size: u64, kind: tar::EntryType) -> Vec<u8> {
    raw_header(name, size, 0o644, kind, b"").as_bytes().to_vec()
}

pub fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

pub fn xz(b: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn raw_header(name: &[u8], size: u64, mode: u32, kind: tar::EntryType, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

fn tar_bytes(files: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let h = raw_header(name, data.len() as u64, 0o644, tar::EntryType::Regular, b"");
        push(&mut out, &h, data);
    }
    out.extend([0u8; 1024]);
    out
}

fn push(out: &mut Vec<u8>, h: &tar::Header, data: &[u8]) {
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// The uncompressed data.tar for `entries`.
pub fn data_tar(entries: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    let dir = raw_header(b"./", 0, 0o755, tar::EntryType::Directory, b"");
    push(&mut out, &dir, &[]);
    for e in entries {
        let (h, data): (tar::Header, &[u8]) = match e {
            T::Dir(p, m) => (
                raw_header(p.as_bytes(), 0, *m, tar::EntryType::Directory, b""),
                &[],
            ),
            T::File(p, d, m) => (
                raw_header(
                    p.as_bytes(),
                    d.len() as u64,
                    *m,
                    tar::EntryType::Regular,
                    b"",
                ),
                d,
            ),
            T::Symlink(p, t) => (
                raw_header(
                    p.as_bytes(),
                    0,
                    0o777,
                    tar::EntryType::Symlink,
                    t.as_bytes(),
                ),
                &[],
            ),
            T::Hardlink(p, t) => (
                raw_header(p.as_bytes(), 0, 0o644, tar::EntryType::Link, t.as_bytes()),
                &[],
            ),
            T::CharDev(p) => (
                raw_header(p.as_bytes(), 0, 0o600, tar::EntryType::Char, b""),
                &[],
            ),
            T::RawFile(n, d) => (
                raw_header(n, d.len() as u64, 0o644, tar::EntryType::Regular, b""),
                d,
            ),
        };
        push(&mut out, &h, data);
    }
    out.extend([0u8; 1024]);
    out
}

/// Write a flat mirror: the debs under `pool/` and a `Packages` index.
pub fn mirror(dir: &Path, debs: &[Deb]) -> PathBuf {
    let pool = dir.join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    let mut index = String::new();
    for d in debs {
        let p = d.write(&pool);
        let bytes = std::fs::read(&p).unwrap();
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        index.push_str(d.control().trim_end());
        index.push_str(&format!(
            "\nFilename: pool/{}\nSize: {}\nSHA256: {}\n\n",
            p.file_name().unwrap().to_string_lossy(),
            bytes.len(),
            sha
        ));
    }
    std::fs::write(dir.join("Packages"), index).unwrap();
    dir.to_path_buf()
}
