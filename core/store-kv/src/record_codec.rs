//! How records (messages, deliveries, events, …) are stored as values: MessagePack with
//! named fields (`rmp_serde`), so the serde attributes of the record types (defaults, skipped
//! fields, tagged enums) mean what they mean in JSON. Values written before this encoding are
//! JSON objects and start with `{`, which no MessagePack map does: both are read.
//!
//! Against JSON, a delivered message's records are ~30% smaller (numbers are binary, strings
//! unescaped), and encoding and decoding skip number formatting and escape scanning.

use serde::de::DeserializeOwned;
use serde::Serialize;

use pushgate_api::error::StoreError;

/// The first byte of every JSON record.
const JSON_OBJECT: u8 = b'{';

/// The record as stored.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec fails only for a sequence or map of unknown length, which no record
    // type serialises (serde_json's own maps and arrays know theirs).
    if let Err(e) = rmp_serde::encode::write_named(&mut out, value) {
        tracing::error!(error = %e, "a record could not be encoded");
        out.clear();
    }
    out
}

/// The record stored under `key`.
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    if bytes.first() == Some(&JSON_OBJECT) {
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
    } else {
        rmp_serde::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
    }
}

/// The version of a stored delivery record, read from its first field (where
/// `DeliveryRecord` puts it) without decoding the rest; records whose first field is not the
/// version (written before versions existed) are decoded in full.
pub fn version_of(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    #[derive(serde::Deserialize)]
    struct VersionOf {
        #[serde(default)]
        version: u64,
    }
    let leading = if bytes.first() == Some(&JSON_OBJECT) {
        leading_json_version(bytes)
    } else {
        leading_msgpack_version(bytes)
    };
    match leading {
        Some(v) => Ok(v),
        None => decode::<VersionOf>(key, bytes).map(|v| v.version),
    }
}

fn leading_json_version(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(b"{\"version\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn leading_msgpack_version(bytes: &[u8]) -> Option<u64> {
    // A map header: fixmap (0x80..=0x8f), map16 (0xde + 2 bytes) or map32 (0xdf + 4).
    let rest = match *bytes.first()? {
        0x80..=0x8f => &bytes[1..],
        0xde => bytes.get(3..)?,
        0xdf => bytes.get(5..)?,
        _ => return None,
    };
    // The key: fixstr of 7 bytes, "version".
    let rest = rest.strip_prefix(b"\xa7version")?;
    let uint = |n: usize| -> Option<u64> {
        let be = rest.get(1..1 + n)?;
        Some(be.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
    };
    match *rest.first()? {
        v @ 0x00..=0x7f => Some(u64::from(v)),
        0xcc => uint(1),
        0xcd => uint(2),
        0xce => uint(4),
        0xcf => uint(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_api::model::{
        DeliveryError, DeliveryId, DeliveryRecord, DeliveryState, DeviceRef, EventKind,
        EventRecord, MessageId, MessageRecord, Notification, Target, Transition,
    };

    fn delivery(version: u64) -> DeliveryRecord {
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 3,
        };
        let device = DeviceRef {
            provider: "mock".into(),
            cid: "cid-ü\"1".into(),
        };
        let mut d = DeliveryRecord::queued(id, &device, 1_700_000_000_000);
        d.version = version;
        d.state = DeliveryState::Failed;
        d.error = Some(DeliveryError {
            code: "unregistered".into(),
            message: "gone".into(),
            unregistered: true,
        });
        d.history.push(Transition {
            state: DeliveryState::Failed,
            at: 1_700_000_000_123,
            reason: Some("receipt_timeout".into()),
        });
        d.device_data = Some(serde_json::json!({"endpoint": "https://x", "n": -3, "f": 1.5}));
        d
    }

    #[test]
    fn records_read_back_as_written() {
        let d = delivery(7);
        let bytes = encode(&d);
        assert_ne!(bytes.first(), Some(&JSON_OBJECT));
        assert!(bytes.len() < serde_json::to_vec(&d).map_or(0, |v| v.len()));
        assert_eq!(decode::<DeliveryRecord>(b"k", &bytes).ok(), Some(d));

        let m = MessageRecord {
            id: MessageId::generate(),
            app: "demo".into(),
            from: None,
            to: Target::Alias("bob".into()),
            payload: serde_json::json!({"text": "hi", "nested": [1, null, true, {"x": 2.25}]}),
            created_at: 1,
            expires_at: 2,
            notify_sender: true,
            request_id: Some("r-1".into()),
            delivery_count: 1,
            system: false,
            urgency: None,
            collapse_key: None,
            notification: Some(Notification {
                title: "t".into(),
                body: "b".into(),
            }),
        };
        assert_eq!(decode::<MessageRecord>(b"k", &encode(&m)).ok(), Some(m));

        let e = EventRecord {
            id: MessageId::generate(),
            app: "demo".into(),
            kind: EventKind::MessageDelivered,
            created_at: 5,
            data: serde_json::json!({"message_id": "x", "big": u64::MAX, "neg": i64::MIN}),
            attempts: 0,
            next_attempt_at: 9,
            ordering_key: Some("k".into()),
        };
        assert_eq!(decode::<EventRecord>(b"k", &encode(&e)).ok(), Some(e));
    }

    #[test]
    fn json_records_written_before_still_read() {
        let d = delivery(4);
        let json = serde_json::to_vec(&d).unwrap_or_default();
        assert_eq!(decode::<DeliveryRecord>(b"k", &json).ok(), Some(d));
        assert_eq!(version_of(b"k", &json).ok(), Some(4));
    }

    #[test]
    fn the_version_is_read_from_the_first_field() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as u64 + 1,
            u64::MAX,
        ] {
            assert_eq!(version_of(b"k", &encode(&delivery(v))).ok(), Some(v), "{v}");
        }
        assert_eq!(
            version_of(b"k", br#"{"version":12,"id":"x"}"#).ok(),
            Some(12)
        );
        // Not first: decoded in full.
        assert_eq!(version_of(b"k", br#"{"id":"x","version":7}"#).ok(), Some(7));
        assert_eq!(version_of(b"k", br#"{"id":"x"}"#).ok(), Some(0));
        assert!(version_of(b"k", b"garbage").is_err());
        assert!(version_of(b"k", b"").is_err());
    }

    #[test]
    fn damaged_records_are_errors_naming_the_key() {
        let bytes = encode(&delivery(1));
        let cut = &bytes[..bytes.len() / 2];
        match decode::<DeliveryRecord>(b"V-key", cut) {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "V-key"),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
