//! The load client: one keep-alive HTTP/1.1 connection per worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Options;

/// message id → when its 202 arrived.
pub type Accepted = Arc<Mutex<HashMap<String, Instant>>>;

/// What one load run measured.
pub struct Run {
    pub accepted: usize,
    pub errors: usize,
    pub statuses: HashMap<u16, usize>,
    /// Accept latency of each request, in microseconds.
    pub latencies_us: Vec<u64>,
    pub started: Instant,
    pub elapsed: Duration,
}

async fn connect(base: &str) -> Result<(SendRequest<Full<Bytes>>, String), String> {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let stream = TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok((sender, authority))
}

async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    authority: &str,
    path: &str,
    key: Option<&str>,
    body: String,
) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let mut request = Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// The gateway connection `c` talks to, of the comma-separated `bases`.
fn pick(bases: &str, c: usize) -> String {
    let urls: Vec<&str> = bases.split(',').collect();
    urls[c % urls.len()].to_string()
}

/// Binds `user<i>` → `cid-<i>` for i in 0..n over `connections` connections (spread over
/// the comma-separated gateways of `base`).
pub async fn bind_aliases(
    base: &str,
    key: &str,
    n: usize,
    connections: usize,
) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..connections.min(n.max(1)) {
        let (base, key, next) = (pick(base, c), key.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut sender, authority) = connect(&base).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), String>(());
                }
                let body = format!("{{\"provider\":\"mock\",\"cid\":\"cid-{i}\"}}");
                let (status, answer) = post(
                    &mut sender,
                    &authority,
                    &format!("/v1/apps/demo/aliases/user{i}/devices"),
                    Some(&key),
                    body,
                )
                .await?;
                if status != 200 {
                    return Err(format!(
                        "bind user{i}: {status} {}",
                        String::from_utf8_lossy(&answer)
                    ));
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Sends messages per `o` (fixed rate or as fast as possible, bounded by time and count),
/// the connections spread over the comma-separated gateways of `base`.
pub async fn drive(
    base: &str,
    key: Option<&str>,
    o: &Options,
    accepted: Option<Accepted>,
) -> Result<Run, String> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(o.seconds);
    let sent = Arc::new(AtomicUsize::new(0));
    let limit = o.count.unwrap_or(usize::MAX);
    let interval = o
        .rate
        .map(|r| Duration::from_secs_f64(o.connections as f64 / r.max(0.001)));
    let mut tasks = Vec::new();
    for c in 0..o.connections {
        let (base, key, sent, accepted) = (
            pick(base, c),
            key.map(str::to_string),
            sent.clone(),
            accepted.clone(),
        );
        let aliases = o.aliases.max(1);
        let workers = o.connections;
        let matrix = o.matrix;
        tasks.push(tokio::spawn(async move {
            let (mut sender, authority) = connect(&base).await?;
            let mut latencies = Vec::new();
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            let (mut ok, mut errors) = (0usize, 0usize);
            // Stagger the workers across one interval.
            let offset = interval.map(|i| i.mul_f64(c as f64 / workers as f64)).unwrap_or_default();
            let mut k: u32 = 0;
            loop {
                let intended = match interval {
                    Some(i) => started + offset + i * k,
                    None => Instant::now(),
                };
                if intended >= deadline {
                    break;
                }
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= limit {
                    break;
                }
                k += 1;
                if interval.is_some() {
                    tokio::time::sleep_until(intended.into()).await;
                }
                let (path, body, key, taken) = if matrix {
                    // A homeserver's notify for one pusher on the mock (no API key).
                    let body = format!(
                        "{{\"notification\":{{\"event_id\":\"$lg{n}\",\"room_id\":\"!room:loadgen\",\"type\":\"m.room.message\",\"sender\":\"@loadgen:loadgen\",\"content\":{{\"msgtype\":\"m.text\",\"body\":\"hello from the load generator\"}},\"counts\":{{\"unread\":1}},\"devices\":[{{\"app_id\":\"com.example.loadgen\",\"pushkey\":\"cid-{}\",\"data\":{{}}}}]}}}}",
                        n % aliases
                    );
                    ("/_matrix/push/v1/notify", body, None, 200)
                } else {
                    let body = format!(
                        "{{\"to\":{{\"alias\":\"user{}\"}},\"from\":\"loadgen\",\"payload\":{{\"seq\":{n},\"text\":\"hello from the load generator\"}}}}",
                        n % aliases
                    );
                    ("/v1/apps/demo/messages", body, key.as_deref(), 202)
                };
                match post(&mut sender, &authority, path, key, body).await {
                    Ok((status, answer)) => {
                        let now = Instant::now();
                        latencies.push(now.duration_since(intended).as_micros() as u64);
                        *statuses.entry(status).or_default() += 1;
                        if status == taken {
                            ok += 1;
                            if let Some(map) = &accepted {
                                let id = serde_json::from_slice::<serde_json::Value>(&answer)
                                    .ok()
                                    .and_then(|v| v["message_id"].as_str().map(str::to_string));
                                if let (Some(id), Ok(mut map)) = (id, map.lock()) {
                                    map.insert(id, now);
                                }
                            }
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        // Reconnect after a broken connection.
                        match connect(&base).await {
                            Ok((s, _)) => sender = s,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            Ok::<_, String>((ok, errors, statuses, latencies))
        }));
    }
    let mut run = Run {
        accepted: 0,
        errors: 0,
        statuses: HashMap::new(),
        latencies_us: Vec::new(),
        started,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (ok, errors, statuses, latencies) = t.await.map_err(|e| e.to_string())??;
        run.accepted += ok;
        run.errors += errors;
        for (s, n) in statuses {
            *run.statuses.entry(s).or_default() += n;
        }
        run.latencies_us.extend(latencies);
    }
    run.elapsed = started.elapsed();
    Ok(run)
}
