//! `imgforge bundle`: see [`crate::bundle`]. Writes a bundle, verifies one,
//! or installs one into docker, with one status line each.

use super::Status;
use crate::bundle::{self, BundleOptions, VerifyOptions, install::InstallOptions};
use anyhow::Result;

/// `imgforge bundle OUT -o FILE`.
pub fn write(opts: &BundleOptions, quiet: bool) -> Result<bundle::Written> {
    let st = Status { quiet };
    st.say("Bundling", opts.out.display());
    let w = bundle::write(opts)?;
    let (bytes, inc, left) = w.manifest.totals();
    let base = match &w.manifest.base {
        Some(b) => format!(
            "; a delta on top of release {} ({left} blob(s) left to it)",
            b.release
        ),
        None => String::new(),
    };
    let signed = match &w.keyid {
        Some(k) => format!(", signed (key {})", &k[..16.min(k.len())]),
        None => ", unsigned".into(),
    };
    st.say(
        "Finished",
        format!(
            "{}: release {}, {} image(s), {inc} blob(s) ({bytes} bytes), {} bytes in all{signed}{base}; manifest {}",
            opts.dest.display(),
            w.manifest.release,
            w.manifest.images.len(),
            w.size,
            w.manifest_digest
        ),
    );
    Ok(w)
}

/// One line saying what was verified.
pub fn describe(v: &bundle::Verified) -> String {
    let (bytes, inc, left) = v.manifest.totals();
    let sig = match (&v.keyid, v.signed) {
        (Some(k), _) => format!("signature verified (key {k})"),
        (None, true) => "signed, signature not checked (no --key)".into(),
        (None, false) => "unsigned".into(),
    };
    let base = match (&v.manifest.base, v.base_checked) {
        (Some(b), true) => format!(
            "; delta on top of release {} ({}): its {left} left-out blob(s) are the base's",
            b.release, b.manifest
        ),
        (Some(b), false) => format!(
            "; delta on top of release {} ({}): {left} blob(s) expected at the site, base not checked (no --base)",
            b.release, b.manifest
        ),
        (None, _) => String::new(),
    };
    format!(
        "verified release {} (manifest {}): {} image(s), {} entries, {inc} blob(s), {bytes} bytes; {sig}{base}",
        v.manifest.release,
        v.manifest_digest,
        v.manifest.images.len(),
        v.entries
    )
}

/// What was verified, as JSON (`bundle verify --format json`).
pub fn to_json(v: &bundle::Verified) -> serde_json::Value {
    let (bytes, inc, left) = v.manifest.totals();
    let refs: Vec<&str> = v
        .manifest
        .images
        .iter()
        .map(|i| i.reference.as_str())
        .collect();
    serde_json::json!({
        "release": v.manifest.release,
        "manifest": v.manifest_digest,
        "images": refs,
        "entries": v.entries,
        "blobsIncluded": inc,
        "blobsFromBase": left,
        "bytes": bytes,
        "signed": v.signed,
        "keyid": v.keyid,
        "base": v.manifest.base.as_ref().map(|b| serde_json::json!({"release": b.release, "manifest": b.manifest, "checked": v.base_checked})),
    })
}

/// `imgforge bundle verify FILE`.
pub fn verify(opts: &VerifyOptions) -> Result<bundle::Verified> {
    Ok(bundle::verify(opts)?)
}

/// `imgforge bundle install FILE --docker`.
pub fn install(opts: &InstallOptions, quiet: bool) -> Result<bundle::Verified> {
    let st = Status { quiet };
    st.say("Verifying", opts.verify.file.display());
    let (v, docker) = bundle::install::install(opts)?;
    st.say("Verified", describe(&v));
    for line in docker.lines().filter(|l| !l.trim().is_empty()) {
        st.say("Docker", line.trim());
    }
    st.say(
        "Installed",
        format!("{} image(s) into docker", v.manifest.images.len()),
    );
    Ok(v)
}
