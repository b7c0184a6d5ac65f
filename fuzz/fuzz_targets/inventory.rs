//! The site inventory reader (`imgforge bundle inventory` output, carried
//! back from a site to the vendor for `bundle --since`): any bytes are
//! refused, read or recognised as not an inventory; what is read writes
//! back to bytes that read the same, and its chain IDs can be taken.
#![no_main]
use imgforge::bundle::inventory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `read` sniffs a file: one per fuzzing process, rewritten per input.
    let file = std::env::temp_dir().join(format!("imgforge-fuzz-inv-{}", std::process::id()));
    std::fs::write(&file, data).expect("write the input to a temporary file");
    let from_file = inventory::read(&file);
    let parsed = inventory::parse(data);
    if let Ok(Some((inv, digest))) = from_file {
        assert!(digest.starts_with("sha256:"));
        let again = inventory::parse(&inv.to_bytes()).expect("an inventory reads back");
        assert_eq!(again.expect("a written inventory is valid"), inv);
        for image in &inv.images {
            assert_eq!(inventory::chain_ids(&image.layers).len(), image.layers.len());
        }
    } else if let Some(Ok(inv)) = parsed {
        // Parsed from memory but not from the file: only a leading byte
        // other than `{` (whitespace) or a size past the reader's 64 MiB
        // limit may make the difference.
        assert!(data.first() != Some(&b'{') || data.len() > 64 << 20, "{inv:?}");
    }
});
