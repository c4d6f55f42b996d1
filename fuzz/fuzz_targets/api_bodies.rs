#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<pushgate_api::request::MessageRequest>(data) {
        let _ = request.into_message();
    }
    let _ = pushgate_sendmessage::parse_replies(data, Some("alice".into()));
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = pushgate::http::routes::Route::parse(path);
    }
});
