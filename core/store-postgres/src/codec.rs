//! Column values: ids as bytes, times as `bigint`, records as their JSON.

use pushgate_api::error::StoreError;
use pushgate_api::model::{DeliveryId, MessageId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Epoch milliseconds as a `bigint`.
pub fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// A `bigint` as epoch milliseconds.
pub fn from_ms(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

pub fn id(id: MessageId) -> Vec<u8> {
    id.to_bytes().to_vec()
}

/// The `(message, idx)` columns of a delivery.
pub fn delivery(id: DeliveryId) -> (Vec<u8>, i32) {
    (id.message.to_bytes().to_vec(), i32::from(id.index))
}

pub fn parse_id(bytes: &[u8]) -> Result<MessageId, StoreError> {
    let raw: [u8; 16] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: hex(bytes),
        reason: format!("an id is 16 bytes, not {}", bytes.len()),
    })?;
    Ok(MessageId::from_bytes(raw))
}

pub fn parse_delivery(message: &[u8], idx: i32) -> Result<DeliveryId, StoreError> {
    let index = u16::try_from(idx).map_err(|_| StoreError::Corrupt {
        key: hex(message),
        reason: format!("delivery index {idx} is out of range"),
    })?;
    Ok(DeliveryId {
        message: parse_id(message)?,
        index,
    })
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our record types serialise infallibly (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: table.to_string(),
        reason: e.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
