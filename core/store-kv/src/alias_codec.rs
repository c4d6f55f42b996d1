//! A compact binary form of alias records (they are the bulk of a large deployment's data):
//! version byte 2, then per device `provider_len u8, provider, cid_len u8, cid, bound_at u64 BE,
//! data_len u32 BE, data` (the device's provider data as JSON; length 0: none). The alias
//! itself is the key. Version 1 (no data) and JSON records (`{…}`) are still read.

use pushgate_api::error::StoreError;
use pushgate_api::model::{AliasRecord, BoundDevice};

const VERSION: u8 = 2;
/// Records written before devices carried provider data.
const VERSION_WITHOUT_DATA: u8 = 1;

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
        let data = d
            .data
            .as_ref()
            .map(|v| serde_json::to_vec(v).unwrap_or_default())
            .unwrap_or_default();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// Decodes the record of `alias` stored under `key`.
pub fn decode(alias: &str, key: &[u8], bytes: &[u8]) -> Result<AliasRecord, StoreError> {
    match bytes.first() {
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| corrupt(key, &e.to_string())),
        Some(&version @ (VERSION | VERSION_WITHOUT_DATA)) => {
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
                let data = if version == VERSION {
                    let len: [u8; 4] = take(4, &mut rest)?
                        .try_into()
                        .map_err(|_| corrupt(key, "bad data length"))?;
                    match u32::from_be_bytes(len) as usize {
                        0 => None,
                        n => Some(
                            serde_json::from_slice(&take(n, &mut rest)?)
                                .map_err(|e| corrupt(key, &e.to_string()))?,
                        ),
                    }
                } else {
                    None
                };
                devices.push(BoundDevice {
                    provider,
                    cid,
                    bound_at: u64::from_be_bytes(at),
                    data,
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
                    data: None,
                },
                BoundDevice {
                    provider: "mock".into(),
                    cid: "c:2".into(),
                    bound_at: 0,
                    data: Some(serde_json::json!({"endpoint": "https://push.example/1"})),
                },
            ],
        };
        let bytes = encode(&record);
        assert!(bytes.len() < serde_json::to_vec(&record).map(|v| v.len()).unwrap_or(0));
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
        // Version 1 (before device data) still reads.
        let v1 = [&[1u8, 1, b'm', 1, b'c'][..], &7u64.to_be_bytes()].concat();
        let read = decode("a", b"k", &v1).expect("v1");
        assert_eq!(
            (read.devices[0].cid.as_str(), read.devices[0].bound_at),
            ("c", 7)
        );
        assert_eq!(read.devices[0].data, None);
        assert!(
            decode(
                "a",
                b"k",
                &[2, 1, b'm', 1, b'c', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9]
            )
            .is_err(),
            "data cut short"
        );
    }
}
