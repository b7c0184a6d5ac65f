//! Registry credentials from the docker client configuration
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): a
//! per-registry credential helper (`credHelpers`), then the default store
//! (`credsStore`), then a base64 `auth` (or `username`/`password`) in `auths`.
//!
//! A credential helper is the `docker-credential-<name>` program: it reads
//! the server address on stdin and prints `{"Username": ..., "Secret": ...}`.

use super::PushError;
use base64::Engine as _;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` header value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The docker configuration file: `dir/config.json` when given, else
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn config_path(dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = dir {
        return Some(d.join("config.json"));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Keys under which docker may have stored a registry's entry.
fn candidate_keys(host: &str) -> Vec<String> {
    vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
        format!("https://{host}/v2/"),
    ]
}

/// The credentials for `host` (`name[:port]`) from the docker config at
/// `path`; `Ok(None)` when the file or an entry for the host is missing.
pub fn lookup(path: &Path, host: &str) -> Result<Option<Credentials>, PushError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(config_err(path, e.to_string())),
    };
    let cfg: Value = serde_json::from_slice(&bytes).map_err(|e| config_err(path, e.to_string()))?;
    let keys = candidate_keys(host);
    for k in &keys {
        if let Some(helper) = cfg["credHelpers"][k].as_str() {
            return run_helper(helper, host);
        }
    }
    for k in &keys {
        let entry = &cfg["auths"][k];
        if entry.is_object() {
            if let Some(c) = from_auths_entry(entry).map_err(|r| config_err(path, r))? {
                return Ok(Some(c));
            }
        }
    }
    if let Some(store) = cfg["credsStore"].as_str() {
        return run_helper(store, host);
    }
    Ok(None)
}

fn config_err(path: &Path, reason: String) -> PushError {
    PushError::Auth {
        registry: path.display().to_string(),
        reason: format!("cannot read the docker config: {reason}"),
    }
}

/// An `auths` entry: `auth` (base64 `user:password`) or `username`/`password`.
fn from_auths_entry(entry: &Value) -> Result<Option<Credentials>, String> {
    if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|e| format!("an `auth` value is not base64: {e}"))?;
        let raw = String::from_utf8(raw).map_err(|_| "an `auth` value is not UTF-8".to_string())?;
        let (u, p) = raw
            .split_once(':')
            .ok_or("an `auth` value is not user:password")?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            secret: p.to_string(),
        }));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.to_string(),
            secret: p.to_string(),
        })),
        _ => Ok(None),
    }
}

/// Run `docker-credential-<helper> get` for `host`.
fn run_helper(helper: &str, host: &str) -> Result<Option<Credentials>, PushError> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String| PushError::Auth {
        registry: host.to_string(),
        reason: format!("credential helper {program}: {reason}"),
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Helpers say "credentials not found in native keychain" for an unknown host.
        if msg.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(fail(format!("exited with {}: {msg}", out.status)));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some(u), Some(s)) => Ok(Some(Credentials {
            username: u.to_string(),
            secret: s.to_string(),
        })),
        _ => Err(fail("the answer has no Username/Secret".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_entry_decodes_base64_user_password() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        // "alice:s3cr:et" in base64; the password may hold a colon.
        std::fs::write(
            &p,
            r#"{"auths":{"reg.example:5000":{"auth":"YWxpY2U6czNjcjpldA=="}}}"#,
        )
        .unwrap();
        let c = lookup(&p, "reg.example:5000").unwrap().unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.secret, "s3cr:et");
        assert_eq!(c.basic(), "Basic YWxpY2U6czNjcjpldA==");
        assert_eq!(lookup(&p, "other.example").unwrap(), None);
    }

    #[test]
    fn https_keyed_entry_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://reg.example":{"username":"bob","password":"pw"}}}"#,
        )
        .unwrap();
        assert_eq!(lookup(&p, "reg.example").unwrap().unwrap().username, "bob");
        assert_eq!(lookup(&dir.path().join("none.json"), "x").unwrap(), None);
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"credHelpers":{"reg.example":"imgforge-no-such"}}"#).unwrap();
        let e = lookup(&p, "reg.example").unwrap_err().to_string();
        assert!(e.contains("docker-credential-imgforge-no-such"), "{e}");
    }
}
