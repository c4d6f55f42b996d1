//! Getui REST v2 JSON shapes, shared by the client and the emulator. Field order follows
//! the official client's recorded requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `{"code", "msg", "data"}`: every Getui answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub code: i64,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// `POST /auth` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthRequest {
    pub sign: String,
    /// Milliseconds as a string (the docs); numbers are accepted too (the Java client).
    #[serde(deserialize_with = "string_or_number")]
    pub timestamp: String,
    pub appkey: String,
}

/// `POST /auth` answer data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthData {
    #[serde(deserialize_with = "string_or_number")]
    pub expire_time: String,
    pub token: String,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

/// `push_message`: exactly one of the three.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PushMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmission: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<Value>,
}

/// `settings` (only what pushgate sets; the emulator ignores the rest).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Channel key (`default`, `ios`, `hw`, `xm`, `op`, `vv`, …) → 1–4: when the vendor
    /// channel (Huawei, Xiaomi, OPPO, vivo, APNs…) carries the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<std::collections::BTreeMap<String, i64>>,
}

/// `audience` of a single push: one cid or one alias.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Audience {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Vec<String>>,
}

/// A PushDTO.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PushRequest {
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub push_message: PushMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    #[serde(default)]
    pub audience: Audience,
    /// The vendor channels' offline path: `{"android": {"ups": {…}}, "ios": {…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_channel: Option<Value>,
}

/// `/push/single/batch/*` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchRequest {
    #[serde(default)]
    pub is_async: bool,
    #[serde(default)]
    pub msg_list: Vec<PushRequest>,
}

/// Push answer data: `{taskid: {cid: status}}`.
pub type PushResult = BTreeMap<String, BTreeMap<String, String>>;

/// One `{cid, alias}` pair of `/user/alias`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AliasPair {
    pub cid: String,
    pub alias: String,
}

/// `/user/alias` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AliasList {
    pub data_list: Vec<AliasPair>,
}

/// A receipt line Getui POSTs (plain text, one JSON object per line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiptLine {
    pub appid: String,
    pub cid: String,
    pub taskid: String,
    pub msgid: String,
    #[serde(default, deserialize_with = "string_or_number_opt")]
    pub code: Option<String>,
    #[serde(default)]
    pub desc: Option<String>,
    pub sign: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_string_opt"
    )]
    pub recvtime: Option<u64>,
}

/// An upstream line (pushgate's format; Getui publishes none).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamLine {
    pub appid: String,
    pub cid: String,
    pub msgid: String,
    pub payload: String,
    #[serde(deserialize_with = "number_or_string")]
    pub timestamp: u64,
    pub sign: String,
}

fn string_or_number_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom("expected a positive integer")),
        Value::String(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom("expected digits")),
        other => Err(serde::de::Error::custom(format!(
            "expected a number, got {other}"
        ))),
    }
}

fn number_or_string_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_u64()),
        Some(Value::String(s)) => Ok(s.parse().ok()),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a number, got {other}"
        ))),
    }
}
