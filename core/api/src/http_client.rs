//! The outbound HTTP(S) client shared by webhooks and HTTP provider adapters
//! (feature `http-client`): HTTP/1.1, rustls, the system's CA roots (Mozilla's if none).

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled client for `http://` and `https://` URLs.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds a client keeping at most `max_idle` idle connections per host.
pub fn build(max_idle: usize) -> HttpClient {
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
    };
    let mut http = HttpConnector::new();
    // Small request/answer exchanges: don't let Nagle hold a request back.
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

/// A `Retry-After` header given in seconds (the form push services and webhooks use).
pub fn retry_after(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_secs)
}

/// What emulated devices do with the ack tokens they receive (the provider emulators use it):
/// each is POSTed as `{"ack"}` to the URL `ack_url` gives at that moment (none: dropped),
/// retried up to 20 times (100 ms, 200 ms, … apart) until it is answered 2xx or 403.
pub async fn pump_device_acks(
    client: HttpClient,
    mut acks: tokio::sync::mpsc::UnboundedReceiver<String>,
    ack_url: impl Fn() -> Option<String>,
) {
    while let Some(ack) = acks.recv().await {
        let Some(url) = ack_url() else {
            continue;
        };
        let client = client.clone();
        tokio::spawn(async move {
            let body = Bytes::from(serde_json::json!({"ack": ack}).to_string());
            for attempt in 0..20u32 {
                let request = http::Request::builder()
                    .method(http::Method::POST)
                    .uri(&url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body.clone()));
                let Ok(request) = request else { return };
                if let Ok(r) = client.request(request).await {
                    if r.status().is_success() || r.status() == http::StatusCode::FORBIDDEN {
                        return;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(
                    100 * u64::from(attempt + 1),
                ))
                .await;
            }
        });
    }
}
