//! Entries for a recipe's `[[files]]`: declared mode and owner, content
//! hashed, never the host's umask.

use crate::layer::{self, Entry};
use crate::recipe::Recipe;
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;

/// The entries of `r`'s `[[files]]`, with mtime `sde`.
pub fn file_entries(r: &Recipe, sde: u64) -> Result<Vec<Entry>> {
    let mut v = Vec::new();
    for f in &r.files {
        let meta = std::fs::symlink_metadata(&f.src)
            .with_context(|| format!("{}: cannot read {}", r.file.display(), f.src.display()))?;
        if !meta.is_file() {
            bail!(
                "{}: {} is not a regular file\nhelp: [[files]] adds regular files; symlinks are not followed",
                r.file.display(),
                f.src.display()
            );
        }
        let (sha, size) = crate::digest::sha256_file(&f.src)?;
        let mut sha_b = [0u8; 32];
        hex::decode_to_slice(&sha, &mut sha_b).expect("hex digest");
        // Never the host umask: declared mode, else 0755 for executables, 0644 otherwise.
        let mode = f.mode.unwrap_or(if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        });
        v.push(Entry {
            path: f.dest.clone(),
            kind: layer::Kind::File,
            mode,
            uid: f.owner.uid,
            gid: f.owner.gid,
            uname: String::new(),
            gname: String::new(),
            mtime: sde,
            size,
            content: layer::Content::Path(f.src.clone()),
            sha256: Some(sha_b),
            origin: format!("recipe file {}", f.src.display()),
        });
    }
    Ok(v)
}
