//! The DEP-5 (machine-readable copyright) parser of the license scanner.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if imgforge::sbom::dep5::is_dep5(text) {
            let d = imgforge::sbom::dep5::parse(text);
            let _ = d.text_for("GPL-2+");
        }
        let _ = imgforge::sbom::dep5::parse(text);
    }
});
