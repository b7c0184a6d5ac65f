//! The remote step cache's readers (`plan::remote`): a step manifest and
//! its config, as a registry serves them (untrusted), given as one input
//! split at the first NUL byte. Any bytes are refused or read; what is read
//! lists only valid file names and belongs to the step asked for.
#![no_main]
use imgforge::plan::remote;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fuzz_target!(|data: &[u8]| {
    let (manifest, config) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(m) = remote::parse_manifest(manifest) else {
        return;
    };
    for kind in ["layer", "sbom"] {
        if let Ok(doc) = remote::parse_doc(config, &m, kind, KEY) {
            assert_eq!((doc.kind.as_str(), doc.key.as_str()), (kind, KEY));
            assert_eq!(doc.files.len(), m.files.len());
            let _ = remote::record_of::<imgforge::plan::layers::LayerRecord>(&doc);
            let _ = remote::record_of::<imgforge::plan::outputs::SbomRecord>(&doc);
        }
    }
});
