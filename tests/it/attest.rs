//! Provenance and signing: an in-toto SLSA provenance statement per image,
//! DSSE envelopes signed with an Ed25519 or ECDSA P-256 key made by
//! openssl, verified by `imgforge attest verify` and by the in-toto
//! reference implementation (PyPI `in-toto` / `securesystemslib`), and
//! refused by both after one byte of the statement changes.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tree (base + one image) of generated packages and its mirror.
pub fn tree(dir: &Path) {
    use crate::debgen::{Deb, T};
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(
        dir.join("base/base.toml"),
        "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
         [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n[packages]\ngood = \"1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("recipes/app.toml"),
        "[image]\nname = \"app\"\ntag = \"2.0\"\n\n[packages]\nextra = \"3.1\"\n",
    )
    .unwrap();
    let debs = [
        Deb::new("good", "1.0").entry(T::File("./usr/share/good", b"ok\n", 0o644)),
        Deb::new("extra", "3.1").entry(T::File("./usr/bin/extra", b"#!/bin/sh\n", 0o755)),
    ];
    crate::debgen::mirror(&dir.join("mirror"), &debs);
}

pub fn build(dir: &Path, out: &str, key: Option<&Path>) {
    let mut cmd = imgforge();
    cmd.current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "recipes", "--mirror", "mirror", "--no-apt", "-q"])
        .args(["--out", out, "--cache", "cache"]);
    if let Some(k) = key {
        cmd.arg("--sign-key").arg(k);
    }
    let o = run(&mut cmd);
    assert!(o.status.success(), "{}", text(&o));
}

/// An openssl key pair: (private PKCS#8 PEM, public PEM).
fn keypair(dir: &Path, alg: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (
        dir.join(format!("{alg}.pem")),
        dir.join(format!("{alg}.pub.pem")),
    );
    let mut keygen = Command::new("openssl");
    keygen.arg("genpkey");
    match alg {
        "ed25519" => keygen.args(["-algorithm", "ed25519"]),
        _ => keygen.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    };
    let o = run(keygen.arg("-out").arg(&private));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    assert!(o.status.success(), "{}", text(&o));
    (private, public)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Verify with the in-toto reference implementation: the envelope, the
/// public key, and a key id computed here (sha256 of the SubjectPublicKeyInfo).
fn in_toto_verify(envelope: &Path, public: &Path) -> std::process::Output {
    let script = "import sys, json, hashlib\n\
from cryptography.hazmat.primitives import serialization as s\n\
from securesystemslib.signer import SSlibKey\n\
from in_toto.models.metadata import Envelope\n\
pub = s.load_pem_public_key(open(sys.argv[2], 'rb').read())\n\
keyid = hashlib.sha256(pub.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo)).hexdigest()\n\
key = SSlibKey.from_crypto(pub, keyid=keyid)\n\
d = key.to_dict(); d['keyid'] = keyid\n\
env = Envelope.from_dict(json.load(open(sys.argv[1])))\n\
env.verify_signature(d)\n\
st = json.loads(env.pae().split(b' ', 4)[4])\n\
print('verified', key.scheme, st['subject'][0]['name'])\n";
    run(Command::new("python3")
        .args(["-c", script])
        .arg(envelope)
        .arg(public))
}

/// Rewrite the envelope with one byte of the signed statement changed.
fn tamper(envelope: &Path, to: &Path) {
    let mut env = read_json(envelope);
    let mut payload = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    let st = String::from_utf8(payload.clone()).unwrap();
    let at = st.find("\"sha256\":\"").unwrap() + 10;
    payload[at] = if payload[at] == b'0' { b'1' } else { b'0' };
    env["payload"] = Value::from(B64.encode(&payload));
    std::fs::write(to, serde_json::to_vec(&env).unwrap()).unwrap();
}

#[test]
fn unsigned_builds_write_deterministic_provenance_statements() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir);
    build(dir, "out", None);
    build(dir, "out2", None);
    let st_path = dir.join("out/attest/app.provenance.json");
    let bytes = std::fs::read(&st_path).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(dir.join("out2/attest/app.provenance.json")).unwrap()
    );
    assert!(!dir.join("out/attest/app.provenance.dsse.json").exists());
    let st: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    // The subject is the image's manifest, as the layout's index names it.
    let index = read_json(&dir.join("out/index.json"));
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "app:2.0")
        .unwrap();
    assert_eq!(st["subject"][0]["name"], "app:2.0");
    assert_eq!(
        format!(
            "sha256:{}",
            st["subject"][0]["digest"]["sha256"].as_str().unwrap()
        ),
        m["digest"].as_str().unwrap()
    );
    // Recipe, base and lock digests; every locked package; no machine path.
    let bd = &st["predicate"]["buildDefinition"];
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let digest_of = |uri: &str| {
        deps.iter()
            .find(|d| d["uri"] == uri)
            .unwrap_or_else(|| panic!("{uri}: {deps:?}"))["digest"]["sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for f in [
        "recipes/app.toml",
        "base/base.toml",
        "recipes/imgforge.lock",
    ] {
        assert_eq!(
            digest_of(f),
            imgforge::digest::sha256_hex(&std::fs::read(dir.join(f)).unwrap()),
            "{f}"
        );
    }
    let names: Vec<&str> = deps.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["extra", "good"]);
    assert_eq!(bd["internalParameters"]["compression"], "gzip");
    assert_eq!(bd["internalParameters"]["sourceDateEpoch"], 0);
    assert_eq!(
        st["predicate"]["runDetails"]["builder"]["version"]["imgforge"],
        env!("CARGO_PKG_VERSION")
    );
    let statement = String::from_utf8(bytes).unwrap();
    assert!(!statement.contains(dir.to_str().unwrap()), "{statement}");
    // Nothing signed: verify says how to sign (the key is RFC 8410's example).
    let public = dir.join("example.pub.pem");
    std::fs::write(
        &public,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let o = run(imgforge()
        .current_dir(dir)
        .args(["attest", "verify", "--key"])
        .arg(&public)
        .arg("out"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no attest/*.dsse.json envelope"),
        "{}",
        text(&o)
    );
}

needs! { [has_openssl, has_python_in_toto]
    "needs `openssl` on PATH, python3 in-toto + securesystemslib";
    fn signed_provenance_verifies_with_in_toto_and_fails_after_one_byte_changes() {
        if !require_tool("openssl") {
            return;
        }
        let probe = run(Command::new("python3").args(["-c", "import in_toto, securesystemslib"]));
        if !probe.status.success() {
            missing(
                "this test needs the Python packages in-toto and securesystemslib (pip install in-toto)",
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        tree(dir);
        for alg in ["ed25519", "p256"] {
            let (private, public) = keypair(dir, alg);
            let out = format!("out-{alg}");
            build(dir, &out, Some(&private));
            let out = dir.join(out);
            // imgforge verifies every envelope of the output.
            let o = run(imgforge()
                .args(["attest", "verify", "--key"])
                .arg(&public)
                .arg(&out));
            assert!(o.status.success(), "{alg}: {}", text(&o));
            let t = text(&o);
            assert!(
                t.contains("verified app:2.0 sha256:") && t.contains("verified base:t1"),
                "{t}"
            );
            // The signed payload is the statement written beside it.
            let env_path = out.join("attest/app.provenance.dsse.json");
            let env = read_json(&env_path);
            assert_eq!(
                B64.decode(env["payload"].as_str().unwrap()).unwrap(),
                std::fs::read(out.join("attest/app.provenance.json")).unwrap()
            );
            // The in-toto reference implementation agrees.
            let o = in_toto_verify(&env_path, &public);
            eprintln!("in-toto {alg}: {}", text(&o));
            assert!(
                o.status.success() && text(&o).contains("verified"),
                "{alg}: {}",
                text(&o)
            );
            // One byte of the statement changed: both refuse it.
            let bad = dir.join(format!("tampered-{alg}.dsse.json"));
            tamper(&env_path, &bad);
            let o = run(imgforge()
                .args(["attest", "verify", "--key"])
                .arg(&public)
                .arg(&bad));
            assert_eq!(o.status.code(), Some(1), "{alg}: {}", text(&o));
            assert!(
                text(&o).contains("the signature does not verify"),
                "{}",
                text(&o)
            );
            let o = in_toto_verify(&bad, &public);
            assert!(
                !o.status.success(),
                "in-toto accepted a changed statement: {}",
                text(&o)
            );
            assert!(
                text(&o).contains("SignatureVerificationError"),
                "{}",
                text(&o)
            );
        }
    }
}
