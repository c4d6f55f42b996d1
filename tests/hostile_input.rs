//! A stable-toolchain fuzz smoke test (the cargo-fuzz targets in `fuzz/` need nightly):
//! random bytes and random mutations of valid inputs go through every parser that sees
//! outside input; none may panic.

use rand::{Rng, SeedableRng};

const ROUNDS: usize = 4000;

fn mutate(rng: &mut rand::rngs::StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..8) {
        match rng.gen_range(0..4) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v.remove(i);
            }
            2 => {
                let i = rng.gen_range(0..=v.len());
                v.insert(
                    i,
                    *b"{}[]\",:\\\n\0\xff"
                        .get(rng.gen_range(0..12))
                        .unwrap_or(&b'x'),
                );
            }
            _ => {
                let cut = rng.gen_range(0..=v.len());
                v.truncate(cut);
            }
        }
    }
    v
}

fn inputs(seeds: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e3779b97f4a7c15);
    (0..ROUNDS)
        .map(|i| {
            if i % 4 == 0 {
                (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect()
            } else {
                mutate(&mut rng, seeds[i % seeds.len()])
            }
        })
        .collect()
}

#[test]
fn callback_parsers_never_panic() {
    let receipt = pushgate_getui::callbacks::receipt_line("app", "secret", "c1", "t1", "m1", 5);
    let upstream =
        pushgate_getui::callbacks::upstream_line("app", "secret", "c1", "m1", "{\"to\":\"b\"}", 5);
    let mock = pushgate_mock::sign_line(b"secret", "r1", "c1", 5);
    let mock_up = pushgate_mock::sign_upstream(b"secret", "c1", "m1", "hi", 5);
    for input in inputs(&[
        receipt.as_bytes(),
        upstream.as_bytes(),
        mock.as_bytes(),
        mock_up.as_bytes(),
    ]) {
        let _ = pushgate_getui::callbacks::parse_receipts("app", "secret", &input);
        let _ = pushgate_getui::callbacks::parse_upstream("app", "secret", &input);
        let _ = pushgate_mock::parse_receipts(b"secret", &input);
        let _ = pushgate_mock::parse_upstream(b"secret", &input);
        let _ = pushgate_sendmessage::parse_replies(&input, Some("alice".into()));
    }
}

#[test]
fn api_bodies_and_paths_never_panic() {
    let body = br#"{"to": {"alias": "bob"}, "payload": {"t": 1}, "from": "alice", "request_id": "r1", "ttl_seconds": 60, "notify_sender": true, "provider": "mock"}"#;
    let device = br#"{"to": {"device": {"provider": "mock", "cid": "c1"}}, "payload": null}"#;
    let path = b"/v1/apps/demo/aliases/%E7%94%A8/devices/mock/c1";
    for input in inputs(&[body, device, path]) {
        if let Ok(request) =
            serde_json::from_slice::<pushgate_engine::engine::MessageRequest>(&input)
        {
            let _ = request.into_message();
        }
        let _ =
            pushgate::http::request::parse_json::<pushgate_engine::engine::MessageRequest>(&input);
        let text = String::from_utf8_lossy(&input);
        let _ = pushgate::http::routes::Route::parse(&text);
    }
}

#[test]
fn the_config_parser_never_panics() {
    let config = b"[server]\nlisten = \"127.0.0.1:0\"\n\n[[apps]]\nid = \"demo\"\napi_keys = [\"${KEY}\"]\ndefault_provider = \"mock\"\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\nreceipt_delay_ms = 5\n";
    for input in inputs(&[config]) {
        let text = String::from_utf8_lossy(&input);
        let _ = pushgate::Config::parse("fuzz.toml", &text, &|_| Some("k".repeat(20)));
    }
}
