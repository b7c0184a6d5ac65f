//! `imgforge bundle`: see [`crate::bundle`]. Writes a bundle, verifies one,
//! or installs one into docker, with one status line each.

use super::Status;
use crate::bundle::{self, BundleOptions, VerifyOptions, install::InstallOptions};
use anyhow::Result;

/// `imgforge bundle OUT -o FILE`.
pub fn write(opts: &BundleOptions, quiet: bool) -> Result<bundle::Written> {
    let st = Status { quiet };
    st.say("Bundling", opts.out.display());
    let bar = st.progress("reading the output");
    let w = bundle::write_with(opts, &|m| bar.set(m))?;
    drop(bar);
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

/// `imgforge bundle verify FILE` (progress on stderr).
pub fn verify(opts: &VerifyOptions, quiet: bool) -> Result<bundle::Verified> {
    let bar = Status { quiet }.progress("verifying");
    Ok(bundle::verify_with(opts, &|m| bar.set(m))?)
}

/// `imgforge bundle install FILE --docker`.
pub fn install(opts: &InstallOptions, quiet: bool) -> Result<bundle::Verified> {
    let st = Status { quiet };
    st.say("Verifying", opts.verify.file.display());
    let bar = st.progress("verifying");
    let (v, docker) = bundle::install::install(opts, &|m| bar.set(m))?;
    drop(bar);
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

/// `imgforge bundle install FILE --to REGISTRY`: progress on stderr, a
/// line per image and a summary (or the summary as JSON on stdout).
pub fn install_to(
    opts: &bundle::registry::RegistryOptions,
    json: bool,
    quiet: bool,
) -> Result<bundle::registry::Installed> {
    let st = Status { quiet };
    let t0 = std::time::Instant::now();
    st.say("Verifying", opts.verify.file.display());
    let bar = std::sync::Mutex::new(st.progress("verifying"));
    let (v, done) = bundle::registry::install(opts, &|msg| {
        if let Ok(b) = bar.lock() {
            b.set(msg);
        }
    })?;
    drop(bar);
    st.say("Verified", describe(&v));
    for i in &done.images {
        st.say(
            "Installed",
            format!(
                "{} {} ({} uploaded, {} bytes; {} mounted; {} already there{})",
                i.reference,
                i.digest,
                i.uploaded,
                i.uploaded_bytes,
                i.mounted,
                i.skipped,
                if i.tagged { "" } else { "; tag unchanged" }
            ),
        );
    }
    let j = done.to_json();
    st.say(
        "Finished",
        format!(
            "{} image(s) of release {} into {} in {:.1}s: {} blob(s), {} bytes uploaded, {} mounted, {} skipped",
            done.images.len(),
            v.manifest.release,
            opts.connect.destination,
            t0.elapsed().as_secs_f64(),
            j["blobsUploaded"],
            j["bytesUploaded"],
            j["blobsMounted"],
            j["blobsSkipped"]
        ),
    );
    if json {
        println!(
            "{}",
            String::from_utf8_lossy(&crate::json::to_canonical(&j))
        );
    }
    Ok(done)
}

/// `imgforge bundle inventory --docker | --from REGISTRY -o FILE`.
pub fn inventory(
    opts: &bundle::inventory::InventoryOptions,
    quiet: bool,
) -> Result<bundle::inventory::Inventory> {
    let st = Status { quiet };
    let bar = st.progress("taking the inventory");
    let inv = bundle::inventory::inventory(opts, &|m| bar.set(m))?;
    drop(bar);
    st.say(
        "Finished",
        format!(
            "{}: {} image(s) at {}, {} blob(s), {} layer chain(s)",
            opts.dest.display(),
            inv.images.len(),
            inv.source,
            inv.blobs.len(),
            inv.chain_ids.len()
        ),
    );
    Ok(inv)
}
