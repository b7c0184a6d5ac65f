//! A small blocking client for the OCI distribution API on `ureq`.
//!
//! Why not `oci-client`: it is async and brings tokio, reqwest and hyper
//! for six requests (HEAD/POST/PUT on blobs, HEAD/PUT on manifests, GET on
//! a token endpoint), while everything else in imgforge is blocking and
//! parallel with rayon. This client handles the two authentication schemes
//! registries use (`Basic`, and `Bearer` tokens from the realm the registry
//! names in `WWW-Authenticate`), retries transient failures (connection
//! errors, 408, 429, 5xx) with exponential backoff, and streams blob bodies
//! from disk with a known `Content-Length`.

use super::auth::Credentials;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::{self, Method};

/// A request body: nothing, bytes, or a file streamed from disk.
#[derive(Debug, Clone)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File {
        path: PathBuf,
        size: u64,
    },
    /// `size` bytes of a file from `offset` (a blob inside a bundle).
    Part {
        path: PathBuf,
        offset: u64,
        size: u64,
    },
}

/// What came back: status, the headers imgforge reads, and a short body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub digest: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: String,
}

/// A failed exchange, after retries.
#[derive(Debug, Clone)]
pub struct Failure(pub String);

/// How long a client waits: for a connection, for an answer's head, and
/// for each read of a body (`None`: no bound).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
    pub read: Option<Duration>,
}

/// One registry endpoint (`scheme://host[:port]`).
pub struct Client {
    agent: ureq::Agent,
    /// `http://127.0.0.1:5000` or `https://host`.
    pub base: String,
    /// `host[:port]`, the key of the docker config.
    pub host: String,
    creds: Option<Credentials>,
    retries: u32,
    backoff: Duration,
    /// Authorization header value per scope set, once obtained.
    tokens: Mutex<BTreeMap<String, String>>,
}

impl Client {
    pub fn new(base: String, host: String, creds: Option<Credentials>, retries: u32) -> Client {
        let t = Timeouts {
            connect: Duration::from_secs(30),
            response: Duration::from_secs(300),
            read: None,
        };
        Client::with_timeouts(base, host, creds, retries, t)
    }

    /// A client with other bounds on waiting (the remote step cache's are
    /// short: a slow registry must not hold a build up).
    pub fn with_timeouts(
        base: String,
        host: String,
        creds: Option<Credentials>,
        retries: u32,
        t: Timeouts,
    ) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(t.connect))
            .timeout_recv_response(Some(t.response))
            .timeout_per_read(t.read)
            .user_agent(concat!("imgforge/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            base,
            host,
            creds,
            retries,
            backoff: Duration::from_millis(250),
            tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// An absolute URL for a path or a `Location` header.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.base, path_or_url)
        }
    }

    /// Send a request, authenticating on a 401 and retrying transient
    /// failures. `scopes` are the token scopes the request needs
    /// (`repository:NAME:pull,push`).
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body,
        scopes: &[String],
    ) -> Result<Reply, Failure> {
        let key = scopes.join(" ");
        let mut authed_once = false;
        loop {
            let auth = self.tokens.lock().expect("token lock").get(&key).cloned();
            let reply = self.send_retrying(&method, url, headers, body, auth.as_deref())?;
            if reply.status == 401 && !authed_once {
                authed_once = true;
                let header = self.authenticate(&reply, scopes)?;
                self.tokens
                    .lock()
                    .expect("token lock")
                    .insert(key.clone(), header);
                continue;
            }
            return Ok(reply);
        }
    }

    fn send_retrying(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body,
        auth: Option<&str>,
    ) -> Result<Reply, Failure> {
        let mut attempt = 0;
        loop {
            let r = self.send_once(method, url, headers, body, auth);
            let transient = match &r {
                Err(_) => true,
                Ok(rep) => matches!(rep.status, 408 | 429 | 500 | 502 | 503 | 504),
            };
            if !transient || attempt >= self.retries {
                return r;
            }
            std::thread::sleep(self.backoff * 2u32.pow(attempt.min(6)));
            attempt += 1;
        }
    }

    fn send_once(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body,
        auth: Option<&str>,
    ) -> Result<Reply, Failure> {
        let mut resp = self.exchange(method, url, headers, body, auth)?;
        let mut reply = reply_of(&resp);
        if *method != Method::HEAD {
            let _ = resp
                .body_mut()
                .as_reader()
                .take(64 * 1024)
                .read_to_string(&mut reply.body);
        }
        Ok(reply)
    }

    /// `GET url` with its body streamed into `sink`, at most `max` bytes
    /// (more is an error), authenticating on a 401 like [`Client::send`];
    /// not retried (its caller falls back on other work). The reply's
    /// `body` is empty; on a status other than 200 nothing is written.
    pub fn download(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        scopes: &[String],
        sink: &mut dyn std::io::Write,
        max: u64,
    ) -> Result<Reply, Failure> {
        let key = scopes.join(" ");
        let mut authed_once = false;
        loop {
            let auth = self.tokens.lock().expect("token lock").get(&key).cloned();
            let mut resp =
                self.exchange(&Method::GET, url, headers, &Body::Empty, auth.as_deref())?;
            let reply = reply_of(&resp);
            if reply.status == 401 && !authed_once {
                authed_once = true;
                let header = self.authenticate(&reply, scopes)?;
                self.tokens
                    .lock()
                    .expect("token lock")
                    .insert(key.clone(), header);
                continue;
            }
            if reply.status == 200 {
                let fail = |e: &dyn std::fmt::Display| Failure(format!("GET {url}: {e}"));
                let mut body = resp.body_mut().as_reader().take(max + 1);
                let n = std::io::copy(&mut body, sink).map_err(|e| fail(&e))?;
                if n > max {
                    return Err(fail(&format!("the body is larger than {max} bytes")));
                }
            }
            return Ok(reply);
        }
    }

    fn exchange(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body,
        auth: Option<&str>,
    ) -> Result<http::Response<ureq::Body>, Failure> {
        let mut req = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let fail = |e: &dyn std::fmt::Display| Failure(format!("{method} {url}: {e}"));
        let resp = match body {
            Body::Empty => {
                let req = req.body(()).map_err(|e| fail(&e))?;
                self.agent.run(req)
            }
            Body::Bytes(b) => {
                let req = req
                    .header("Content-Length", b.len().to_string())
                    .body(*b)
                    .map_err(|e| fail(&e))?;
                self.agent.run(req)
            }
            Body::File { path, size } => {
                let mut f = std::fs::File::open(path)
                    .map_err(|e| fail(&format!("cannot read {}: {e}", path.display())))?;
                let send = ureq::SendBody::from_reader(&mut f);
                let req = req
                    .header("Content-Length", size.to_string())
                    .body(send)
                    .map_err(|e| fail(&e))?;
                self.agent.run(req)
            }
            Body::Part { path, offset, size } => {
                use std::io::{Seek, SeekFrom};
                let cannot =
                    |e: std::io::Error| fail(&format!("cannot read {}: {e}", path.display()));
                let mut f = std::fs::File::open(path).map_err(cannot)?;
                f.seek(SeekFrom::Start(*offset)).map_err(cannot)?;
                let mut part = f.take(*size);
                let send = ureq::SendBody::from_reader(&mut part);
                let req = req
                    .header("Content-Length", size.to_string())
                    .body(send)
                    .map_err(|e| fail(&e))?;
                self.agent.run(req)
            }
        };
        resp.map_err(|e| fail(&e))
    }

    /// The `Authorization` header after a 401: basic credentials, or a
    /// bearer token from the realm named in `WWW-Authenticate`.
    fn authenticate(&self, reply: &Reply, scopes: &[String]) -> Result<String, Failure> {
        let challenge = reply.www_authenticate.clone().unwrap_or_default();
        let (scheme, params) = parse_challenge(&challenge);
        let no_creds = || {
            Failure(format!(
                "{} asks for credentials ({challenge}) and the docker config has none for {}",
                self.base, self.host
            ))
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => self
                .creds
                .as_ref()
                .map(Credentials::basic)
                .ok_or_else(no_creds),
            "bearer" => self.bearer_token(&params, scopes),
            _ => Err(Failure(format!(
                "{}: unsupported authentication challenge {challenge:?}",
                self.base
            ))),
        }
    }

    fn bearer_token(
        &self,
        params: &BTreeMap<String, String>,
        scopes: &[String],
    ) -> Result<String, Failure> {
        let realm = params
            .get("realm")
            .ok_or_else(|| Failure(format!("{}: a Bearer challenge without realm", self.base)))?;
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        let mut add = |k: &str, v: &str| {
            url.push(sep);
            url.push_str(&format!("{k}={}", query_escape(v)));
            sep = '&';
        };
        if let Some(s) = params.get("service") {
            add("service", s);
        }
        for s in scopes {
            add("scope", s);
        }
        let headers: Vec<(&str, String)> = self
            .creds
            .iter()
            .map(|c| ("Authorization", c.basic()))
            .collect();
        let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = self.send_retrying(&Method::GET, &url, &hdrs, &Body::Empty, None)?;
        if r.status != 200 {
            return Err(Failure(format!(
                "token request to {realm} answered {}: {}",
                r.status,
                r.body.trim()
            )));
        }
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .map_err(|e| Failure(format!("token from {realm}: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| Failure(format!("token from {realm}: no `token` field")))?;
        Ok(format!("Bearer {token}"))
    }
}

/// The status and the headers imgforge reads of an answer (no body yet).
fn reply_of(resp: &http::Response<ureq::Body>) -> Reply {
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Reply {
        status: resp.status().as_u16(),
        location: h("location"),
        digest: h("docker-content-digest"),
        www_authenticate: h("www-authenticate"),
        body: String::new(),
    }
}

/// `Bearer realm="...",service="..."` -> ("Bearer", {realm, service}).
pub fn parse_challenge(h: &str) -> (String, BTreeMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((k, after)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(k, v.to_string());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

/// Percent-encode a query value (RFC 3986 unreserved characters kept).
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "basic-realm");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
