use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "DEMO_API_KEY" => Some("k".repeat(20)),
        "DEMO_WEBHOOK_SECRET" => Some("s".repeat(20)),
        _ => None,
    }
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./pushgate-data"
max_body_bytes = 65536

[[apps]]
id = "demo"
api_keys = ["${DEMO_API_KEY}"]
webhook_url = "http://127.0.0.1:3000/pushgate"
webhook_secret = "${DEMO_WEBHOOK_SECRET}"
default_provider = "mock"

[[providers]]
name = "mock"
kind = "mock"
receipt_delay_ms = 5
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse("pushgate.toml", text, &env)
}

#[test]
fn the_design_example_parses_with_expansion() {
    let config = parse(GOOD).expect("valid");
    assert_eq!(config.apps[0].api_keys[0], "k".repeat(20));
    assert_eq!(config.providers[0].name, "mock");
    match config.providers[0]
        .spec
        .settings::<pushgate_mock::MockSettings>()
    {
        Some(m) => assert_eq!(m.receipt_delay_ms, 5),
        None => panic!(
            "expected a mock provider, got {:?}",
            config.providers[0].spec
        ),
    }
    assert!(
        !format!("{:?}", config.apps[0]).contains(&"k".repeat(20)),
        "Debug redacts keys"
    );
}

fn error_of(text: &str) -> ConfigError {
    parse(text).expect_err("invalid")
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let e = error_of(&GOOD.replace(
        "max_body_bytes = 65536",
        "max_body_bytes = 65536\nmax_bodyy = 1",
    ));
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("max_bodyy"), "{e}");

    let e = error_of(&GOOD.replace(
        "receipt_delay_ms = 5",
        "receipt_delay_ms = 5\nreceipt_delai = 1",
    ));
    assert_eq!(e.line, Some(18), "{e}");
    assert!(e.message.contains("receipt_delai"), "{e}");
    assert!(e.to_string().starts_with("pushgate.toml:18: "), "{e}");
}

#[test]
fn bad_values_name_key_and_line() {
    let e = error_of(&GOOD.replace("receipt_delay_ms = 5", "receipt_delay_ms = \"soon\""));
    assert_eq!(e.line, Some(17), "{e}");
    assert!(e.message.contains("receipt_delay_ms"), "{e}");
    assert!(!e.message.contains('\n'), "{e}");

    let e = error_of(&GOOD.replace("receipt_delay_ms = 5", "transient_failure_rate = 2.0"));
    assert!(e.message.contains("transient_failure_rate"), "{e}");

    let e = error_of(&GOOD.replace("kind = \"mock\"", "kind = \"carrier-pigeon\""));
    assert_eq!(e.line, Some(16), "{e}");
    assert!(e.message.contains("unknown kind"), "{e}");

    let e = error_of(&GOOD.replace("listen = \"127.0.0.1:8080\"", "listen = \"localhost\""));
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("server.listen"), "{e}");

    let e = error_of(&GOOD.replace(
        "default_provider = \"mock\"",
        "default_provider = \"getui\"",
    ));
    assert!(e.message.contains("default_provider"), "{e}");
    assert_eq!(e.line, Some(12), "{e}");

    let e = error_of(&GOOD.replace("\"${DEMO_API_KEY}\"", "\"short\""));
    assert!(e.message.contains("shorter than"), "{e}");

    let e = error_of(&GOOD.replace("webhook_secret = \"${DEMO_WEBHOOK_SECRET}\"\n", ""));
    assert!(e.message.contains("webhook_secret"), "{e}");

    let e = error_of(&GOOD.replace("http://127.0.0.1:3000/pushgate", "ftp://x"));
    assert!(e.message.contains("webhook_url"), "{e}");

    let e = error_of(&format!(
        "{GOOD}\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n"
    ));
    assert!(e.message.contains("defined twice"), "{e}");

    let e = error_of(&GOOD.replace("${DEMO_API_KEY}", "${MISSING_KEY}"));
    assert_eq!(e.line, Some(9), "{e}");
    assert!(e.message.contains("MISSING_KEY"), "{e}");

    let e = error_of("[server]\n");
    assert!(e.message.contains("[[apps]]"), "{e}");

    let e = error_of("this is = = not toml");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn the_embedded_default_is_valid() {
    let c = Config::embedded("./d".into(), "k".repeat(20));
    assert_eq!(c.apps[0].id, "demo");
    assert_eq!(c.apps[0].default_provider, "mock");
    assert!(c.listen_addr().is_ok());
}

#[test]
fn getui_providers_parse_and_validate() {
    let text = format!(
        "{GOOD}\n[[providers]]\nname = \"getui\"\nkind = \"getui\"\nbase_url = \"http://127.0.0.1:18081\"\napp_id = \"a\"\napp_key = \"k\"\nmaster_secret = \"${{DEMO_WEBHOOK_SECRET}}\"\nqps = 100\n"
    );
    let config = parse(&text).expect("valid");
    match config.providers[1]
        .spec
        .settings::<pushgate_getui::GetuiSettings>()
    {
        Some(g) => {
            assert_eq!(g.qps, Some(100));
            assert!(
                !format!("{g:?}").contains(&"s".repeat(20)),
                "Debug redacts the master secret"
            );
        }
        None => panic!("expected getui, got {:?}", config.providers[1].spec),
    }
    let e = error_of(&text.replace("qps = 100", "qps = 100\nmax_batch = 500"));
    assert!(e.message.contains("max_batch"), "{e}");
    let e = error_of(&text.replace("app_key = \"k\"\n", ""));
    assert!(e.message.contains("app_key"), "{e}");
}

#[test]
fn the_store_section_is_validated_with_its_line() {
    let base = "[[apps]]\nid = \"demo\"\napi_keys = [\"0123456789abcdef\"]\ndefault_provider = \"mock\"\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n";
    let parse = |extra: &str| Config::parse("t.toml", &format!("{base}\n{extra}"), &|_| None);
    let ok =
        parse("[store]\nbackend = \"sled\"\nlease_ms = 5000\nnode_id = \"gw-1\"\n").expect("valid");
    assert_eq!(ok.store.lease_ms, 5000);
    assert_eq!(ok.store.node_id.as_deref(), Some("gw-1"));
    assert_eq!(parse("").expect("defaults").store, StoreConfig::default());
    let e = parse("[store]\nbackend = \"cassandra\"\n").expect_err("unknown backend");
    assert_eq!(e.line, Some(11), "{e}");
    assert!(e.message.contains("store.backend"), "{e}");
    let e = parse("[store]\nlease_ms = 10\n").expect_err("too short");
    assert!(e.message.contains("store.lease_ms"), "{e}");
    let e = parse("[store]\nnode_id = \"Gw 1\"\n").expect_err("bad name");
    assert!(e.message.contains("store.node_id"), "{e}");
}

#[test]
fn the_postgres_store_needs_a_valid_url_and_pool_size() {
    let base = "[[apps]]\nid = \"demo\"\napi_keys = [\"0123456789abcdef\"]\ndefault_provider = \"mock\"\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n";
    let parse = |extra: &str| Config::parse("t.toml", &format!("{base}\n{extra}"), &|_| None);
    let ok = parse(
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://gw:s3cret@127.0.0.1:5432/pushgate\"\npool_size = 32\n",
    )
    .expect("valid");
    assert_eq!(ok.store.backend, "postgres");
    assert_eq!(ok.store.pool_size, 32);
    assert!(
        !format!("{:?}", ok.store).contains("s3cret"),
        "the password stays out of Debug output"
    );

    let e = parse("[store]\nbackend = \"postgres\"\n").expect_err("no url");
    assert!(e.message.contains("store.url"), "{e}");
    assert!(e.message.contains("needs a url"), "{e}");

    let e = parse("[store]\nbackend = \"postgres\"\nurl = \"mysql://x@y/z\"\n")
        .expect_err("not postgres");
    assert_eq!(e.line, Some(12), "{e}");
    assert!(e.message.contains("store.url"), "{e}");

    let e = parse("[store]\nbackend = \"sled\"\nurl = \"postgres://a@b/c\"\n")
        .expect_err("url on sled");
    assert_eq!(e.line, Some(12), "{e}");
    assert!(e.message.contains("only backend \"postgres\""), "{e}");

    for size in ["1", "1001"] {
        let e = parse(&format!(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://a@b/c\"\npool_size = {size}\n"
        ))
        .expect_err("pool size out of range");
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.message.contains("store.pool_size"), "{e}");
    }
}

#[test]
fn the_log_section_takes_a_format_and_a_filter() {
    let base = "[[apps]]\nid = \"demo\"\napi_keys = [\"0123456789abcdef\"]\ndefault_provider = \"mock\"\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n";
    let parse = |extra: &str| Config::parse("t.toml", &format!("{base}\n{extra}"), &|_| None);
    let ok =
        parse("[log]\nformat = \"json\"\nlevel = \"warn,pushgate_engine=debug\"\n").expect("valid");
    assert_eq!(ok.log.format, crate::telemetry::LogFormat::Json);
    let e = parse("[log]\nformat = \"xml\"\n").expect_err("unknown format");
    assert!(e.message.contains("xml"), "{e}");
    let e = parse("[log]\nlevel = \"[not a filter\"\n").expect_err("bad filter");
    assert!(e.message.contains("log.level"), "{e}");
    assert_eq!(e.line, Some(11), "{e}");
}

#[test]
fn matrix_apps_name_defined_apps_and_providers_with_their_lines() {
    let base = "[[apps]]\nid = \"demo\"\napi_keys = [\"0123456789abcdef\"]\ndefault_provider = \"mock\"\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n";
    let parse = |extra: &str| Config::parse("t.toml", &format!("{base}\n{extra}"), &|_| None);
    let ok = parse("[matrix]\nresponse_wait_ms = 500\n\n[[matrix_apps]]\napp_id = \"com.example.*\"\napp = \"demo\"\nprovider = \"mock\"\n")
        .expect("valid");
    assert_eq!(ok.matrix.response_wait_ms, 500);
    assert_eq!(ok.matrix.ttl_seconds, 900, "Sygnal's default TTL");
    assert!(ok.matrix_apps[0].matches("com.example.chat"));

    let e = parse("[[matrix_apps]]\napp_id = \"a\"\napp = \"nope\"\nprovider = \"mock\"\n")
        .expect_err("unknown app");
    assert_eq!(e.line, Some(12), "{e}");
    assert!(e.message.contains("\"nope\" is not defined"), "{e}");

    let e = parse("[[matrix_apps]]\napp_id = \"a\"\napp = \"demo\"\nprovider = \"fcm\"\n")
        .expect_err("unknown provider");
    assert_eq!(e.line, Some(13), "{e}");

    let e = parse("[[matrix_apps]]\napp_id = \"a b\"\napp = \"demo\"\nprovider = \"mock\"\n")
        .expect_err("space");
    assert_eq!(e.line, Some(11), "{e}");

    let e = parse("[matrix]\nresponse_wait_ms = 5\n").expect_err("too short");
    assert!(e.message.contains("matrix.response_wait_ms"), "{e}");
    let e = parse("[matrix]\nper_source_rps = 0\n").expect_err("zero");
    assert!(e.message.contains("matrix.per_source_rps"), "{e}");
}

#[test]
fn webhook_batches_and_the_event_stream_are_checked() {
    let app = |extra: &str| {
        format!("[[apps]]\nid = \"demo\"\napi_keys = [\"0123456789abcdef\"]\ndefault_provider = \"mock\"\n{extra}\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n")
    };
    let parse = |text: String| Config::parse("t.toml", &text, &|_| None);
    let ok = parse(app("webhook_batch_max = 100\n")).expect("valid");
    assert_eq!(ok.apps[0].webhook_batch_max, 100);
    assert_eq!(parse(app("")).expect("valid").apps[0].webhook_batch_max, 1);
    let e = parse(app("webhook_batch_max = 0\n")).expect_err("zero");
    assert!(e.message.contains("webhook_batch_max"), "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    let stream = |extra: &str| parse(format!("{}\n[event_stream]\n{extra}", app("")));
    assert_eq!(
        stream("retention_seconds = 0\n")
            .expect("off")
            .event_stream
            .retention_seconds,
        0
    );
    let e = stream("buffer = 1\n").expect_err("tiny buffer");
    assert!(
        e.message.contains("event_stream.buffer") || e.message.contains("buffer"),
        "{e}"
    );
    let e = stream("keepalive_seconds = 0\n").expect_err("no keep-alive");
    assert!(e.message.contains("keepalive_seconds"), "{e}");
}
