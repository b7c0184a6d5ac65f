//! A mirror's `Packages` index, stanza by stanza.
#![no_main]
use imgforge::pkgindex::{Index, Origin, add_packages_text};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut index = Index::new("amd64");
        let _ = add_packages_text(&mut index, text, Path::new("Packages"), Origin::Url(String::new()));
        for b in &index.bad {
            let _ = b.to_string();
        }
    }
});
