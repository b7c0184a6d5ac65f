//! `imgforge push`: see [`crate::registry`].

use super::Status;
use anyhow::Result;
use std::time::Instant;

/// `imgforge push`: see [`crate::registry`]. Prints one line per image and
/// a summary (or the summary as JSON on stdout).
pub fn push(opts: &crate::registry::PushOptions, json: bool, quiet: bool) -> Result<()> {
    let st = Status { quiet };
    let t0 = Instant::now();
    let summary = crate::registry::push(opts, &|p| {
        st.say(
            "Pushed",
            format!(
                "{} {} ({} uploaded, {} bytes; {} mounted; {} already there{})",
                p.reference,
                p.manifest_digest,
                p.uploaded,
                p.uploaded_bytes,
                p.mounted,
                p.skipped,
                if p.manifest_sent {
                    ""
                } else {
                    "; tag unchanged"
                }
            ),
        )
    })?;
    st.say(
        "Finished",
        format!(
            "push of {} image(s) to {} in {:.1}s: {} blob(s), {} bytes uploaded, {} mounted, {} skipped",
            summary.images.len(),
            summary.registry,
            t0.elapsed().as_secs_f64(),
            summary.uploaded(),
            summary.uploaded_bytes(),
            summary.mounted(),
            summary.skipped()
        ),
    );
    if json {
        println!(
            "{}",
            String::from_utf8_lossy(&crate::json::to_canonical(&summary.to_json()))
        );
    }
    Ok(())
}
