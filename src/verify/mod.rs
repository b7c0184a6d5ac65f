//! Reproducibility checks (`imgforge verify`).

pub mod record;

/// Run `imgforge verify` (being written).
pub fn run(_opts: &crate::ops::VerifyOptions) -> anyhow::Result<bool> {
    anyhow::bail!("verify is not available in this build")
}
