//! The mock's receipt format: one JSON object per line, HMAC-SHA256 signed, e.g.
//! `{"ref":"01J…-0","cid":"c1","status":"delivered","ts":1700000000000,"sign":"<hex>"}`
//! where `sign = hex(hmac_sha256(secret, ref "\n" cid "\n" status "\n" ts))`.

use hmac::{Hmac, Mac};
use pushgate_api::model::{Receipt, ReceiptStatus, Upstream};
use pushgate_api::provider::{parse_lines, ParsedReceipts, ParsedUpstream};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// One receipt line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptLine {
    #[serde(rename = "ref")]
    pub reference: String,
    pub cid: String,
    pub status: String,
    pub ts: u64,
    pub sign: String,
}

fn mac(secret: &[u8], reference: &str, cid: &str, status: &str, ts: u64) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(format!("{reference}\n{cid}\n{status}\n{ts}").as_bytes());
    mac
}

/// A signed delivered-receipt line (with trailing newline).
pub fn sign_line(secret: &[u8], reference: &str, cid: &str, ts: u64) -> String {
    let sign = hex::encode(
        mac(secret, reference, cid, "delivered", ts)
            .finalize()
            .into_bytes(),
    );
    let line = ReceiptLine {
        reference: reference.to_string(),
        cid: cid.to_string(),
        status: "delivered".into(),
        ts,
        sign,
    };
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses and verifies every line; bad lines are rejected with a reason, never fatal.
pub fn parse(secret: &[u8], body: &[u8]) -> ParsedReceipts {
    let (receipts, rejected) = parse_lines(body, "a receipt line", |item: ReceiptLine| {
        let sign = hex::decode(&item.sign).map_err(|_| "sign is not hex".to_string())?;
        mac(secret, &item.reference, &item.cid, &item.status, item.ts)
            .verify_slice(&sign)
            .map_err(|_| "signature mismatch".to_string())?;
        let status = match item.status.as_str() {
            "delivered" => ReceiptStatus::Delivered,
            other => ReceiptStatus::Failed {
                code: other.to_string(),
                message: format!("device reported {other}"),
            },
        };
        Ok(Receipt {
            provider_ref: item.reference,
            cid: item.cid,
            status,
            at: Some(item.ts),
        })
    });
    ParsedReceipts { receipts, rejected }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_lines_verify_and_forgeries_do_not() {
        let good = sign_line(b"s3cret", "ref-1", "c1", 42);
        let forged = sign_line(b"other", "ref-2", "c2", 42);
        let tampered = good.replace("\"c1\"", "\"c9\"");
        let body = format!("{good}{forged}{tampered}not json\n\n");
        let parsed = parse(b"s3cret", body.as_bytes());
        assert_eq!(parsed.receipts.len(), 1);
        assert_eq!(parsed.receipts[0].provider_ref, "ref-1");
        assert_eq!(parsed.receipts[0].status, ReceiptStatus::Delivered);
        let lines: Vec<usize> = parsed.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert!(parsed.rejected[0].reason.contains("signature"));
    }
}

/// One upstream line of a simulated device:
/// `{"cid","msgid","payload","ts","sign"}` with
/// `sign = hex(hmac_sha256(secret, cid "\n" msgid "\n" payload "\n" ts))`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamLine {
    pub cid: String,
    pub msgid: String,
    pub payload: String,
    pub ts: u64,
    pub sign: String,
}

/// A signed upstream line (with trailing newline).
pub fn sign_upstream(secret: &[u8], cid: &str, msgid: &str, payload: &str, ts: u64) -> String {
    let sign = hex::encode(mac(secret, cid, msgid, payload, ts).finalize().into_bytes());
    let line = UpstreamLine {
        cid: cid.to_string(),
        msgid: msgid.to_string(),
        payload: payload.to_string(),
        ts,
        sign,
    };
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses and verifies upstream lines.
pub fn parse_upstream(secret: &[u8], body: &[u8]) -> ParsedUpstream {
    let (messages, rejected) = parse_lines(body, "an upstream line", |item: UpstreamLine| {
        let verified = hex::decode(&item.sign).is_ok_and(|sign| {
            mac(secret, &item.cid, &item.msgid, &item.payload, item.ts)
                .verify_slice(&sign)
                .is_ok()
        });
        if !verified {
            return Err("signature mismatch".into());
        }
        Ok(Upstream {
            cid: item.cid,
            msgid: item.msgid,
            payload: item.payload,
            sent_at: Some(item.ts),
        })
    });
    ParsedUpstream { messages, rejected }
}

#[cfg(test)]
mod upstream_tests {
    use super::*;

    #[test]
    fn upstream_lines_verify_and_tampering_is_caught() {
        let good = sign_upstream(b"k", "c1", "u1", "hi bob", 9);
        let tampered = good.replace("hi bob", "hi eve");
        let parsed = parse_upstream(b"k", format!("{good}{tampered}").as_bytes());
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(parsed.messages[0].payload, "hi bob");
        assert_eq!(parsed.rejected[0].line, 2);
    }
}
