//! File helpers shared by every stage.

use anyhow::{Context, Result};
use std::path::Path;

/// Write a file atomically (temp file beside it, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".imgforge-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    use std::io::Write;
    tmp.write_all(bytes)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Write `dest` through a temporary file beside it (same file system),
/// renamed over `dest` only once `fill` has written everything and the
/// bytes are flushed: a reader never sees a partial file, and a failure
/// leaves the old `dest` as it was. The file is made readable by all
/// (0644: bundles and archives are for others to read). `io` turns an
/// I/O failure on a path into the caller's error. Returns the size.
pub fn write_replacing<E>(
    dest: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> Result<(), E>,
    io: impl Fn(&Path, std::io::Error) -> E,
) -> Result<u64, E> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".imgforge-")
        .tempfile_in(dir)
        .map_err(|e| io(dir, e))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut w)?;
        w.flush().map_err(|e| io(dest, e))?;
    }
    let f = tmp.as_file();
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| io(dest, e))?;
    let size = f.metadata().map_err(|e| io(dest, e))?.len();
    tmp.persist(dest).map_err(|e| io(dest, e.error))?;
    Ok(size)
}
