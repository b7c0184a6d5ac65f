//! Recipe TOML: the base and image recipe parser and pinning policy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let is_base = data.len() % 2 == 0;
        for d in imgforge::recipe::check_text(Path::new("recipes/x.toml"), text, is_base) {
            let _ = d.to_string();
        }
    }
});
