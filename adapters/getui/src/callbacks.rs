//! Getui callbacks: receipt lines (Getui's format) and upstream lines (pushgate's format),
//! each line verified on its own; forged or foreign-app lines are refused with a reason
//! that never contains a secret or a signature.

use pushgate_api::model::{Receipt, ReceiptStatus, Upstream};
use pushgate_api::provider::{parse_lines, ParsedReceipts, ParsedUpstream};

use crate::sign::{receipt_sign, same_sign, upstream_sign};
use crate::wire::{ReceiptLine, UpstreamLine};

/// Getui's receipt code for "arrived".
const ARRIVED: &str = "200";

/// Parses a receipts callback body for app `app_id`.
pub fn parse_receipts(app_id: &str, master_secret: &str, body: &[u8]) -> ParsedReceipts {
    let (receipts, rejected) = parse_lines(body, "a Getui receipt line", |item: ReceiptLine| {
        if item.appid != app_id {
            return Err("receipt for another Getui app".into());
        }
        let expected = receipt_sign(
            &item.appid,
            &item.cid,
            &item.taskid,
            &item.msgid,
            master_secret,
        );
        if !same_sign(&expected, &item.sign) {
            return Err("signature mismatch".into());
        }
        let status = match item.code.as_deref() {
            None | Some(ARRIVED) => ReceiptStatus::Delivered,
            Some(code) => ReceiptStatus::Failed {
                code: code.to_string(),
                message: item
                    .desc
                    .clone()
                    .unwrap_or_else(|| format!("getui receipt code {code}")),
            },
        };
        Ok(Receipt {
            provider_ref: item.taskid,
            cid: item.cid,
            status,
            at: item.recvtime,
        })
    });
    ParsedReceipts { receipts, rejected }
}

/// Parses an upstream callback body for app `app_id`.
pub fn parse_upstream(app_id: &str, master_secret: &str, body: &[u8]) -> ParsedUpstream {
    let (messages, rejected) = parse_lines(body, "an upstream line", |item: UpstreamLine| {
        if item.appid != app_id {
            return Err("upstream message for another Getui app".into());
        }
        let expected = upstream_sign(
            &item.appid,
            &item.cid,
            &item.msgid,
            &item.payload,
            master_secret,
        );
        if !same_sign(&expected, &item.sign) {
            return Err("signature mismatch".into());
        }
        Ok(Upstream {
            cid: item.cid,
            msgid: item.msgid,
            payload: item.payload,
            sent_at: Some(item.timestamp),
        })
    });
    ParsedUpstream { messages, rejected }
}

/// A signed receipt line (no newline), as Getui (or the emulator) sends it.
pub fn receipt_line(
    app_id: &str,
    master_secret: &str,
    cid: &str,
    taskid: &str,
    msgid: &str,
    recvtime: u64,
) -> String {
    let line = ReceiptLine {
        appid: app_id.into(),
        cid: cid.into(),
        taskid: taskid.into(),
        msgid: msgid.into(),
        code: Some(ARRIVED.into()),
        desc: Some("ok".into()),
        sign: receipt_sign(app_id, cid, taskid, msgid, master_secret),
        recvtime: Some(recvtime),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// A signed upstream line (no newline).
pub fn upstream_line(
    app_id: &str,
    master_secret: &str,
    cid: &str,
    msgid: &str,
    payload: &str,
    timestamp: u64,
) -> String {
    let line = UpstreamLine {
        appid: app_id.into(),
        cid: cid.into(),
        msgid: msgid.into(),
        payload: payload.into(),
        timestamp,
        sign: upstream_sign(app_id, cid, msgid, payload, master_secret),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_vector_line_verifies() {
        let body = br#"{"appid":"testAppId","cid":"cid123","taskid":"RASS_0101_abc","msgid":"msg456","code":"200","desc":"ok","sign":"72d63f4a5ab14c3459b3cc7b3b91ba36"}"#;
        let parsed = parse_receipts("testAppId", "testMasterSecret", body);
        assert_eq!(parsed.rejected, vec![]);
        assert_eq!(parsed.receipts[0].provider_ref, "RASS_0101_abc");
        assert_eq!(parsed.receipts[0].status, ReceiptStatus::Delivered);
    }

    #[test]
    fn forged_foreign_and_malformed_lines_are_refused_one_by_one() {
        let good = receipt_line("app", "secret", "c1", "t1", "m1", 5);
        let forged = receipt_line("app", "guess", "c1", "t2", "m2", 5);
        let foreign = receipt_line("other", "secret", "c1", "t3", "m3", 5);
        let body = format!("{good}\n{forged}\n\n{foreign}\n{{\"appid\":1}}\nnot json\n");
        let parsed = parse_receipts("app", "secret", body.as_bytes());
        assert_eq!(parsed.receipts.len(), 1);
        let lines: Vec<usize> = parsed.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 4, 5, 6]);
        assert!(parsed.rejected.iter().all(|r| !r.reason.contains("secret")));
    }

    #[test]
    fn failure_codes_become_failed_receipts() {
        let mut line: ReceiptLine =
            serde_json::from_str(&receipt_line("app", "s", "c1", "t1", "m1", 5)).expect("line");
        line.code = Some("401".into());
        line.desc = Some("no such user".into());
        let parsed = parse_receipts(
            "app",
            "s",
            serde_json::to_string(&line).expect("json").as_bytes(),
        );
        assert_eq!(
            parsed.receipts[0].status,
            ReceiptStatus::Failed {
                code: "401".into(),
                message: "no such user".into()
            }
        );
    }

    #[test]
    fn upstream_lines_verify() {
        let good = upstream_line("app", "s", "c1", "u1", "{\"to\":\"bob\"}", 7);
        let tampered = good.replace("bob", "eve");
        let parsed = parse_upstream("app", "s", format!("{good}\n{tampered}").as_bytes());
        assert_eq!(parsed.messages.len(), 1);
        assert_eq!(parsed.messages[0].payload, "{\"to\":\"bob\"}");
        assert_eq!(parsed.rejected[0].line, 2);
    }
}
