//! Java KeyStores written by maintainer scripts, made deterministic.
//!
//! ca-certificates-java builds `/etc/ssl/certs/java/cacerts` (JKS) by
//! running Java once the JRE is configured; every entry of a JKS carries
//! its creation date read from the clock, so two builds differ. A JKS is
//! rewritten here with every entry's date set to `SOURCE_DATE_EPOCH` and
//! its integrity digest recomputed. That digest is SHA-1 over the store
//! password (UTF-16BE), the text "Mighty Aphrodite" and the store's
//! bytes; the original digest must verify with a known password (the
//! store's default, `changeit`, or `storepass` in `/etc/default/cacerts`),
//! else the file is refused rather than given a digest no one can check.
//!
//! Written by hand: no crate reads or writes JKS, and the format is small
//! (big-endian counts, length-prefixed aliases and certificates).

use sha1::{Digest, Sha1};

const MAGIC: u32 = 0xFEED_FEED;
const DIGEST_LEN: usize = 20;

/// Whether `bytes` start like a JKS.
pub fn is_jks(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == MAGIC
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn utf(&mut self) -> Result<(), String> {
        let s = self.take(2)?;
        let n = u16::from_be_bytes([s[0], s[1]]) as usize;
        self.take(n).map(|_| ())
    }
    fn blob(&mut self) -> Result<(), String> {
        let n = self.u32()? as usize;
        self.take(n).map(|_| ())
    }
    fn cert(&mut self, version: u32) -> Result<(), String> {
        if version == 2 {
            self.utf()?;
        }
        self.blob()
    }
}

/// Offsets of every entry's 8-byte date, and where the digest starts.
fn date_offsets(b: &[u8]) -> Result<(Vec<usize>, usize), String> {
    let mut r = Reader { b, at: 4 };
    let version = r.u32()?;
    if version != 1 && version != 2 {
        return Err(format!("JKS version {version} is not known"));
    }
    let count = r.u32()?;
    let mut dates = Vec::new();
    for _ in 0..count {
        let tag = r.u32()?;
        r.utf()?;
        dates.push(r.at);
        r.take(8)?;
        match tag {
            1 => {
                r.blob()?;
                for _ in 0..r.u32()? {
                    r.cert(version)?;
                }
            }
            2 => r.cert(version)?,
            t => return Err(format!("JKS entry type {t} is not known")),
        }
    }
    if b.len() != r.at + DIGEST_LEN {
        return Err("bytes after the JKS digest".into());
    }
    Ok((dates, r.at))
}

fn keyed_digest(password: &str, body: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha1::new();
    for u in password.encode_utf16() {
        h.update(u.to_be_bytes());
    }
    h.update(b"Mighty Aphrodite");
    h.update(body);
    h.finalize().into()
}

/// The keystore with every entry dated `epoch` (seconds) and its digest
/// recomputed with the password that verifies it among `passwords`.
pub fn normalize(bytes: &[u8], epoch: u64, passwords: &[String]) -> Result<Vec<u8>, String> {
    let (dates, body_end) = date_offsets(bytes)?;
    let (body, digest) = bytes.split_at(body_end);
    let password = passwords
        .iter()
        .find(|p| keyed_digest(p, body)[..] == *digest)
        .ok_or("its integrity digest verifies with no known store password")?;
    let mut out = body.to_vec();
    let ms = (epoch as i64).saturating_mul(1000).to_be_bytes();
    for at in dates {
        out[at..at + 8].copy_from_slice(&ms);
    }
    let d = keyed_digest(password, &out);
    out.extend_from_slice(&d);
    Ok(out)
}

/// The store passwords to try: the default and `storepass` of
/// `/etc/default/cacerts` (as ca-certificates-java reads it).
pub fn passwords(default_cacerts: Option<&str>) -> Vec<String> {
    let mut v = vec!["changeit".to_string()];
    for line in default_cacerts.unwrap_or("").lines() {
        if let Some(p) = line.trim().strip_prefix("storepass=") {
            v.push(p.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JKS v2 with two trusted certificates dated `ms`.
    fn store(ms: i64, password: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(MAGIC.to_be_bytes());
        b.extend(2u32.to_be_bytes());
        b.extend(2u32.to_be_bytes());
        for (alias, cert) in [("debian:a.pem", &b"CERT-A"[..]), ("debian:b.pem", b"CB")] {
            b.extend(2u32.to_be_bytes());
            b.extend((alias.len() as u16).to_be_bytes());
            b.extend(alias.as_bytes());
            b.extend(ms.to_be_bytes());
            b.extend(5u16.to_be_bytes());
            b.extend(b"X.509");
            b.extend((cert.len() as u32).to_be_bytes());
            b.extend(cert);
        }
        let d = keyed_digest(password, &b);
        b.extend(d);
        b
    }

    #[test]
    fn dates_are_set_and_the_digest_recomputed() {
        let pw = passwords(None);
        let a = normalize(&store(1_700_000_000_123, "changeit"), 1_735_689_600, &pw).unwrap();
        let b = normalize(&store(1_800_000_000_999, "changeit"), 1_735_689_600, &pw).unwrap();
        assert_eq!(a, b, "two runs' stores become one");
        assert_eq!(a, store(1_735_689_600_000, "changeit"));
        assert!(is_jks(&a));
    }

    #[test]
    fn an_unknown_password_or_a_broken_store_is_refused() {
        let pw = passwords(None);
        let e = normalize(&store(1, "secret"), 0, &pw).unwrap_err();
        assert!(e.contains("no known store password"), "{e}");
        let pw = passwords(Some("# x\nstorepass='secret'\n"));
        assert!(normalize(&store(1, "secret"), 0, &pw).is_ok());
        let mut cut = store(1, "changeit");
        cut.truncate(30);
        assert!(normalize(&cut, 0, &pw).unwrap_err().contains("truncated"));
    }
}
