#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pushgate::Config::parse("fuzz.toml", text, &|name| Some(format!("value-of-{name}")));
    }
});
