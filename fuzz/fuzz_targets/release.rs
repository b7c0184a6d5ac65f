//! An archive's `InRelease` / `Release` + `Release.gpg`: the OpenPGP
//! cleartext and detached-signature readers (with no trusted key, every
//! input must be refused without a panic), then the Release field parser.
#![no_main]
use imgforge::archive::release::{parse_release, verify_detached, verify_inrelease};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(verify_inrelease(data, &[]).is_err());
    // Split the input into a Release text and a detached signature.
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (release, sig) = data.split_at(cut);
    assert!(verify_detached(release, sig, &[]).is_err());
    if let Ok(text) = std::str::from_utf8(release) {
        let r = parse_release(text, "stable", "http://127.0.0.1/debian");
        for (path, (hash, _size)) in &r.files {
            assert!(!path.is_empty() && !hash.is_empty());
        }
    }
});
