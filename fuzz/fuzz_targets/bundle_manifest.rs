//! The bundle manifest parser (`imgforge-bundle.json`, the first entry of a
//! bundle carried to a site): any bytes are refused or read, and what is
//! read writes back to bytes that read the same.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = imgforge::bundle::parse(data) {
        let again = m.to_bytes();
        let back = imgforge::bundle::parse(&again).expect("a written manifest reads back");
        assert_eq!(m, back);
        let _ = m.totals();
    }
});
