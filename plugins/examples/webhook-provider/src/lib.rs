//! An HTTP webhook provider plugin: POSTs each delivery to a per-device URL, and accepts
//! HMAC-signed receipts from the devices' side. See README.md beside this crate.

mod http;

use hmac::{Hmac, Mac};
use pushgate_plugin_sdk::{
    export_provider, Delivery, Plugin, Receipt, Receipts, Rejected, SendError, Sent,
};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

/// The plugin's options (the provider's `options` table).
pub struct WebhookProvider {
    /// `http://host:port/path` with `{cid}` replaced by the device's cid.
    url: String,
    timeout: Duration,
    /// Signs requests (`X-Pushgate-Signature`) and verifies receipts; receipts are refused
    /// without it.
    secret: Option<Vec<u8>>,
}

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b"\n");
        }
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

impl Plugin for WebhookProvider {
    fn create(options: Value) -> Result<Self, String> {
        let url = options["url"]
            .as_str()
            .ok_or("options.url is required (http://host:port/path/{cid})")?;
        http::Target::parse(&url.replace("{cid}", "x"))?;
        let timeout_ms = options
            .get("timeout_ms")
            .map_or(Some(5000), Value::as_u64)
            .ok_or("options.timeout_ms must be a number")?;
        let secret = match options.get("secret") {
            None => None,
            Some(Value::String(s)) if s.len() >= 16 => Some(s.as_bytes().to_vec()),
            Some(_) => {
                return Err("options.secret must be a string of at least 16 characters".into())
            }
        };
        Ok(WebhookProvider {
            url: url.to_string(),
            timeout: Duration::from_millis(timeout_ms.max(1)),
            secret,
        })
    }

    fn send(&self, d: &Delivery) -> Result<Sent, SendError> {
        let transient = |code: &str, message: String| SendError::Transient {
            code: code.into(),
            message,
            retry_after_ms: None,
        };
        let target = http::Target::parse(&self.url.replace("{cid}", &d.cid)).map_err(|e| {
            SendError::Permanent {
                code: "bad_url".into(),
                message: e,
            }
        })?;
        let mut body = json!({
            "delivery_id": d.delivery_id,
            "message_id": d.message_id,
            "cid": d.cid,
            "from": d.from,
            "payload": d.payload,
            "ttl_ms": d.ttl_ms,
        });
        if let Some(n) = &d.notification {
            body["notification"] = n.clone();
        }
        let body = body.to_string();
        let mut headers = vec![("X-Pushgate-Delivery".to_string(), d.idempotency_key.clone())];
        if let Some(secret) = &self.secret {
            headers.push((
                "X-Pushgate-Signature".into(),
                format!("sha256={}", hmac_hex(secret, &[body.as_bytes()])),
            ));
        }
        let answer = http::post(&target, &headers, body.as_bytes(), self.timeout)
            .map_err(|e| transient("network", e))?;
        match answer.status {
            200..=299 => Ok(Sent {
                provider_ref: d.idempotency_key.clone(),
            }),
            429 | 500..=599 => Err(SendError::Transient {
                code: format!("http_{}", answer.status),
                message: format!("the device endpoint answered {}", answer.status),
                retry_after_ms: answer.retry_after_s.map(|s| s * 1000),
            }),
            status => Err(SendError::Permanent {
                code: format!("http_{status}"),
                message: format!("the device endpoint answered {status}"),
            }),
        }
    }

    /// Lines `{"ref","cid","status","sign"}`, `sign = hex(hmac_sha256(secret, ref\ncid\nstatus))`.
    fn parse_receipts(&self, body: &[u8]) -> Option<Receipts> {
        let secret = self.secret.as_ref()?;
        let mut out = Receipts::default();
        for (i, line) in String::from_utf8_lossy(body).lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let reject = |reason: &str| Rejected {
                line: i + 1,
                reason: reason.into(),
            };
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                out.rejected.push(reject("not JSON"));
                continue;
            };
            let (Some(r), Some(cid), Some(status), Some(sign)) = (
                v["ref"].as_str(),
                v["cid"].as_str(),
                v["status"].as_str(),
                v["sign"].as_str(),
            ) else {
                out.rejected.push(reject("needs ref, cid, status and sign"));
                continue;
            };
            if hmac_hex(secret, &[r.as_bytes(), cid.as_bytes(), status.as_bytes()])
                != sign.to_ascii_lowercase()
            {
                out.rejected.push(reject("signature mismatch"));
                continue;
            }
            out.receipts.push(Receipt {
                provider_ref: r.into(),
                cid: cid.into(),
                status: if status == "delivered" {
                    "delivered".into()
                } else {
                    "failed".into()
                },
                code: (status != "delivered").then(|| status.to_string()),
                message: None,
            });
        }
        Some(out)
    }
}

/// Signs a receipt line for this plugin (for device-side code and tests).
pub fn receipt_line(secret: &str, reference: &str, cid: &str, status: &str) -> String {
    let sign = hmac_hex(
        secret.as_bytes(),
        &[reference.as_bytes(), cid.as_bytes(), status.as_bytes()],
    );
    json!({"ref": reference, "cid": cid, "status": status, "sign": sign}).to_string()
}

export_provider!(WebhookProvider, "webhook", "0.1.0");
