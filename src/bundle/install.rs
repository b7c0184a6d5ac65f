//! `imgforge bundle install FILE --docker`: verify the bundle, then hand it
//! to `docker load` (which reads its `manifest.json` and blobs). Nothing is
//! loaded unless the whole bundle verifies.
//!
//! A delta loads into a daemon that already holds the base release's
//! layers: Docker (classic image store) skips a layer it has by chain ID
//! without reading it from the archive.

use super::{BundleError, Verified, VerifyOptions};
use std::process::Command;

/// Options of [`install`].
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub verify: VerifyOptions,
    /// The docker client to run [default: `docker` on PATH].
    pub docker: String,
}

/// Verify, then `docker load`; the verification and docker's output.
pub fn install(
    opts: &InstallOptions,
    progress: &dyn Fn(String),
) -> Result<(Verified, String), BundleError> {
    let v = super::verify_with(&opts.verify, progress)?;
    progress(format!("docker load -i {}", opts.verify.file.display()));
    let o = Command::new(&opts.docker)
        .arg("load")
        .arg("-i")
        .arg(&opts.verify.file)
        .output()
        .map_err(|e| BundleError::Install(format!(
            "cannot run {}: {e}\nhelp: install the docker client, or load the verified bundle by hand: docker load -i {}",
            opts.docker,
            opts.verify.file.display()
        )))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() {
        let hint = match &v.manifest.base {
            Some(b) => format!(
                "this is a delta on top of release {}: the daemon must hold that release's images (install it first)",
                b.release
            ),
            None => "check that the docker daemon runs and has room".into(),
        };
        return Err(BundleError::Install(format!(
            "docker load -i {} failed ({}):\n{}\nhelp: {hint}",
            opts.verify.file.display(),
            o.status,
            text.trim_end()
        )));
    }
    Ok((v, text))
}
