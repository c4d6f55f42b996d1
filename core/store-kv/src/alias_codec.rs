//! A compact binary form of alias records (they are the bulk of a large deployment's data):
//! version byte 1, then per device `provider_len u8, provider, cid_len u8, cid, bound_at u64 BE`.
//! The alias itself is the key. JSON records (`{…}`) are still read.

use pushgate_api::error::StoreError;
use pushgate_api::model::{AliasRecord, BoundDevice};

const VERSION: u8 = 1;

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

/// Encodes a record (names longer than 255 bytes are impossible: validated at 64 at most).
pub fn encode(record: &AliasRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + record.devices.len() * 32);
    out.push(VERSION);
    for d in &record.devices {
        for part in [d.provider.as_bytes(), d.cid.as_bytes()] {
            let len = part.len().min(255);
            out.push(len as u8);
            out.extend_from_slice(&part[..len]);
        }
        out.extend_from_slice(&d.bound_at.to_be_bytes());
    }
    out
}

/// Decodes the record of `alias` stored under `key`.
pub fn decode(alias: &str, key: &[u8], bytes: &[u8]) -> Result<AliasRecord, StoreError> {
    match bytes.first() {
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| corrupt(key, &e.to_string())),
        Some(&VERSION) => {
            let mut rest = &bytes[1..];
            let mut devices = Vec::new();
            let take = |n: usize, rest: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
                if rest.len() < n {
                    return Err(corrupt(key, "truncated alias record"));
                }
                let (head, tail) = rest.split_at(n);
                *rest = tail;
                Ok(head.to_vec())
            };
            while !rest.is_empty() {
                let text = |rest: &mut &[u8]| -> Result<String, StoreError> {
                    let len = take(1, rest)?[0] as usize;
                    String::from_utf8(take(len, rest)?)
                        .map_err(|_| corrupt(key, "alias record is not UTF-8"))
                };
                let provider = text(&mut rest)?;
                let cid = text(&mut rest)?;
                let at: [u8; 8] = take(8, &mut rest)?
                    .try_into()
                    .map_err(|_| corrupt(key, "bad time"))?;
                devices.push(BoundDevice {
                    provider,
                    cid,
                    bound_at: u64::from_be_bytes(at),
                });
            }
            Ok(AliasRecord {
                alias: alias.to_string(),
                devices,
            })
        }
        _ => Err(corrupt(key, "unknown alias record format")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_json_and_refuses_garbage() {
        let record = AliasRecord {
            alias: "用户".into(),
            devices: vec![
                BoundDevice {
                    provider: "getui".into(),
                    cid: "0a1b2c".into(),
                    bound_at: 1_795_916_118_732,
                },
                BoundDevice {
                    provider: "mock".into(),
                    cid: "c:2".into(),
                    bound_at: 0,
                },
            ],
        };
        let bytes = encode(&record);
        assert!(bytes.len() < serde_json::to_vec(&record).map(|v| v.len()).unwrap_or(0) / 2);
        assert_eq!(decode("用户", b"k", &bytes).ok(), Some(record.clone()));
        let json = serde_json::to_vec(&record).unwrap_or_default();
        assert_eq!(decode("用户", b"k", &json).ok(), Some(record));
        assert!(decode("a", b"k", &[1, 5, b'x']).is_err(), "truncated");
        assert!(decode("a", b"k", &[9]).is_err(), "unknown version");
        assert!(decode("a", b"k", &[]).is_err());
        assert_eq!(
            decode("a", b"k", &[1]).map(|r| r.devices.len()).ok(),
            Some(0)
        );
    }
}
