//! `bundle verify` on a whole bundle file (a tar from a courier): the
//! manifest, the optional envelope, every entry against the manifest, the
//! end-of-archive blocks. Any bytes are verified or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // verify reads a file: one per fuzzing process, rewritten per input.
    let file = std::env::temp_dir().join(format!("imgforge-fuzz-bundle-{}", std::process::id()));
    std::fs::write(&file, data).expect("write the input to a temporary file");
    let opts = imgforge::bundle::VerifyOptions {
        file,
        key: None,
        base: None,
    };
    if let Ok(v) = imgforge::bundle::verify(&opts) {
        // Without a key, a signature is carried but not checked.
        assert!(v.keyid.is_none());
        assert_eq!(
            v.manifest,
            imgforge::bundle::parse(&v.manifest.to_bytes()).unwrap()
        );
    }
});
