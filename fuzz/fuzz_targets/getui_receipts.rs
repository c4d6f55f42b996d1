#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pushgate_getui::callbacks::parse_receipts("app", "secret", data);
    let _ = pushgate_mock::parse_receipts(b"secret", data);
});
