//! The `.deb` reader: ar structure, control data, data.tar entries.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = imgforge_deb::Limits {
        data_bytes: 16 << 20,
        control_bytes: 4 << 20,
        ..Default::default()
    };
    let _ = imgforge_deb::read_everything(data, &limits);
});
