//! The lock file parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(lock) = imgforge::resolve::Lock::parse(text, Path::new("imgforge.lock")) {
            let again = lock.to_text();
            let back = imgforge::resolve::Lock::parse(&again, Path::new("x")).expect("round trip");
            assert_eq!(lock, back);
        }
    }
});
