//! The emulator's Getui rules: tokens, the alias book (≤10 cids an alias, one alias a cid),
//! push validation and request_id dedupe, device inboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;

use crate::wire::{PushRequest, PushResult};

/// Getui's per-alias device limit.
pub const MAX_CIDS_PER_ALIAS: usize = 10;
/// Getui's batch limit.
pub const MAX_MSG_LIST: usize = 200;
/// Getui's `/user/alias` list limit.
pub const MAX_DATA_LIST: usize = 1000;
const MAX_TTL_MS: i64 = 3 * 24 * 3600 * 1000;

/// A message a simulated device received.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceMessage {
    pub taskid: String,
    pub msgid: String,
    pub request_id: String,
    pub transmission: Option<String>,
    pub notification: Option<Value>,
    /// The vendor channels' part of the push (what an offline device would show).
    pub push_channel: Option<Value>,
    pub received_at: u64,
}

/// A 20001 parameter error with Getui's style of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

/// The alias book.
#[derive(Default)]
pub struct Aliases {
    by_alias: HashMap<String, Vec<String>>,
    by_cid: HashMap<String, String>,
}

/// Checks an alias as Getui does: under 40 characters of letters, digits, `_` and CJK.
pub fn check_alias(alias: &str) -> Result<(), ParamError> {
    let n = alias.chars().count();
    if n == 0 || n >= 40 || !alias.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(ParamError(format!("alias is invalid: {alias:?}")));
    }
    Ok(())
}

impl Aliases {
    /// Binds pairs; moves a cid from its old alias; refuses an 11th cid.
    pub fn bind(&mut self, cid: &str, alias: &str) -> Result<(), ParamError> {
        check_alias(alias)?;
        if self.by_cid.get(cid).map(String::as_str) == Some(alias) {
            return Ok(());
        }
        if self.by_alias.get(alias).map_or(0, Vec::len) >= MAX_CIDS_PER_ALIAS {
            return Err(ParamError("alias bind cid size over limit".into()));
        }
        if let Some(old) = self.by_cid.remove(cid) {
            self.remove_pair(cid, &old);
        }
        self.by_alias
            .entry(alias.to_string())
            .or_default()
            .push(cid.to_string());
        self.by_cid.insert(cid.to_string(), alias.to_string());
        Ok(())
    }

    fn remove_pair(&mut self, cid: &str, alias: &str) {
        if let Some(cids) = self.by_alias.get_mut(alias) {
            cids.retain(|c| c != cid);
            if cids.is_empty() {
                self.by_alias.remove(alias);
            }
        }
    }

    pub fn unbind(&mut self, cid: &str, alias: &str) {
        if self.by_cid.get(cid).map(String::as_str) == Some(alias) {
            self.by_cid.remove(cid);
            self.remove_pair(cid, alias);
        }
    }

    pub fn unbind_all(&mut self, alias: &str) {
        for cid in self.by_alias.remove(alias).unwrap_or_default() {
            self.by_cid.remove(&cid);
        }
    }

    pub fn cids(&self, alias: &str) -> Vec<String> {
        self.by_alias.get(alias).cloned().unwrap_or_default()
    }

    pub fn alias_of(&self, cid: &str) -> Option<String> {
        self.by_cid.get(cid).cloned()
    }
}

/// Validates a PushDTO as Getui does; `single` requires exactly one audience entry.
pub fn check_push(
    push: &PushRequest,
    by_alias: bool,
    unknown_prefix: &str,
) -> Result<(), ParamError> {
    let n = push.request_id.chars().count();
    if !(10..=32).contains(&n) {
        return Err(ParamError(
            "request_id is invalid: it must be 10 to 32 characters".into(),
        ));
    }
    let m = &push.push_message;
    let kinds = [
        m.notification.is_some(),
        m.transmission.is_some(),
        m.revoke.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(ParamError(
            "please choose one of notification and transmission and revoke".into(),
        ));
    }
    if let Some(t) = &m.transmission {
        if t.chars().count() > 3072 {
            return Err(ParamError("transmission size over limit".into()));
        }
    }
    if let Some(strategy) = push.settings.as_ref().and_then(|s| s.strategy.as_ref()) {
        for (key, value) in strategy {
            if !crate::config::STRATEGY_KEYS.contains(&key.as_str()) || !(1..=4).contains(value) {
                return Err(ParamError(format!("strategy {key} is invalid")));
            }
        }
    }
    if let Some(channel) = &push.push_channel {
        check_push_channel(channel)?;
    }
    if let Some(ttl) = push.settings.as_ref().and_then(|s| s.ttl) {
        if !(-1..=MAX_TTL_MS).contains(&ttl) || ttl == 0 {
            return Err(ParamError("ttl is invalid".into()));
        }
    }
    let audience = if by_alias {
        &push.audience.alias
    } else {
        &push.audience.cid
    };
    let other = if by_alias {
        &push.audience.cid
    } else {
        &push.audience.alias
    };
    match audience {
        Some(list) if list.len() == 1 && other.is_none() => {}
        _ => {
            let what = if by_alias { "alias" } else { "cid" };
            return Err(ParamError(format!(
                "audience {what} size is invalid: exactly one is required"
            )));
        }
    }
    if !by_alias {
        let cid = &push
            .audience
            .cid
            .as_ref()
            .map(|l| l[0].clone())
            .unwrap_or_default();
        if cid.is_empty() || cid.starts_with(unknown_prefix) {
            return Err(ParamError("target user is invalid".into()));
        }
    } else if let Some(alias) = push.audience.alias.as_ref().map(|l| &l[0]) {
        check_alias(alias)?;
    }
    Ok(())
}

/// `push_channel` as Getui's server takes it: `android.ups` with exactly one of
/// `notification` (title ≤ 50, body ≤ 256, a known `click_type`) and `transmission`; `ios`
/// with `type` `notify` and an `aps` dictionary.
fn check_push_channel(channel: &Value) -> Result<(), ParamError> {
    let bad = |m: &str| Err(ParamError(m.into()));
    let Some(fields) = channel.as_object() else {
        return bad("push_channel is invalid");
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "android" | "ios" | "harmony"))
    {
        return Err(ParamError(format!("push_channel.{other} is invalid")));
    }
    if let Some(android) = fields.get("android") {
        let ups = &android["ups"];
        let (n, t) = (ups.get("notification"), ups.get("transmission"));
        if n.is_some() == t.is_some() {
            return bad("please choose one of notification and transmission in android.ups");
        }
        if let Some(n) = n {
            let title = n["title"].as_str().unwrap_or("");
            let body = n["body"].as_str().unwrap_or("");
            if title.is_empty() || body.is_empty() {
                return bad("android.ups.notification title and body can not be empty");
            }
            if title.chars().count() > 50 || body.chars().count() > 256 {
                return bad("android.ups.notification title or body size over limit");
            }
            let click = n["click_type"].as_str().unwrap_or("");
            if !matches!(
                click,
                "intent" | "url" | "payload" | "payload_custom" | "startapp" | "none"
            ) {
                return bad("android.ups.notification click_type is invalid");
            }
        }
    }
    if let Some(ios) = fields.get("ios") {
        if ios["type"] != "notify" {
            return bad("ios.type is invalid");
        }
        if !ios["aps"].is_object() {
            return bad("ios.aps is invalid");
        }
    }
    Ok(())
}

/// Pushes already accepted, by request id. As Getui does, a repeated request id is dropped
/// and answered with code 0 and the first push's task id, but no per-cid status.
#[derive(Default)]
pub struct Pushes {
    by_request: HashMap<String, PushResult>,
    counter: AtomicU64,
    /// Pushes that repeated a request id (dropped).
    pub repeats: u64,
}

impl Pushes {
    /// The answer to a repeat of `request_id` (counting it), if it was pushed before.
    pub fn repeat(&mut self, request_id: &str) -> Option<PushResult> {
        let first = self.by_request.get(request_id)?;
        let answer = first
            .keys()
            .map(|taskid| (taskid.clone(), Default::default()))
            .collect();
        self.repeats += 1;
        Some(answer)
    }

    pub fn record(&mut self, request_id: &str, result: PushResult) {
        self.by_request.insert(request_id.to_string(), result);
    }

    /// A fresh task id in Getui's style.
    pub fn task_id(&self) -> String {
        format!(
            "RASS_emu_{:016x}",
            self.counter.fetch_add(1, Ordering::SeqCst) + 1
        )
    }

    /// A fresh per-device message id.
    pub fn msg_id(&self) -> String {
        format!(
            "msg_{:016x}",
            self.counter.fetch_add(1, Ordering::SeqCst) + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Audience, PushMessage};

    #[test]
    fn alias_rules() {
        let mut book = Aliases::default();
        for i in 0..10 {
            book.bind(&format!("c{i}"), "alice").expect("bind");
        }
        assert!(book.bind("c10", "alice").is_err(), "an 11th cid is refused");
        book.bind("c0", "bob").expect("move");
        assert_eq!(book.cids("alice").len(), 9);
        assert_eq!(book.alias_of("c0").as_deref(), Some("bob"));
        assert!(book.bind("c20", &"a".repeat(40)).is_err());
        assert!(book.bind("c20", "用户_1").is_ok());
        assert!(book.bind("c21", "a-b").is_err());
        book.unbind_all("alice");
        assert!(book.cids("alice").is_empty());
        assert!(book.alias_of("c1").is_none());
    }

    #[test]
    fn push_rules() {
        let good = PushRequest {
            request_id: "req-0000001".into(),
            push_message: PushMessage {
                transmission: Some("x".into()),
                ..Default::default()
            },
            settings: None,
            audience: Audience {
                cid: Some(vec!["c1".into()]),
                alias: None,
            },
            push_channel: None,
        };
        assert!(check_push(&good, false, "unknown").is_ok());
        let n = pushgate_api::model::Notification {
            title: "Alice".into(),
            body: "hi".into(),
        };
        let mut offline = good.clone();
        offline.push_channel = Some(crate::provider::push_channel(&n, "x"));
        assert!(check_push(&offline, false, "unknown").is_ok());
        let mut untitled = good.clone();
        untitled.push_channel = Some(
            serde_json::json!({"android": {"ups": {"notification": {"title": "", "body": "b", "click_type": "startapp"}}}}),
        );
        assert!(check_push(&untitled, false, "unknown").is_err());
        let mut both_ups = good.clone();
        both_ups.push_channel = Some(
            serde_json::json!({"android": {"ups": {"notification": {"title": "t", "body": "b", "click_type": "startapp"}, "transmission": "x"}}}),
        );
        assert!(check_push(&both_ups, false, "unknown").is_err());
        let mut bad_strategy = good.clone();
        bad_strategy.settings = Some(crate::wire::Settings {
            ttl: None,
            strategy: Some([("hw".to_string(), 5)].into_iter().collect()),
        });
        assert!(check_push(&bad_strategy, false, "unknown").is_err());
        let mut bad = good.clone();
        bad.request_id = "short".into();
        assert!(check_push(&bad, false, "unknown").is_err());
        let mut both = good.clone();
        both.push_message.notification = Some(serde_json::json!({"title": "t"}));
        assert!(check_push(&both, false, "unknown").is_err());
        let mut none = good.clone();
        none.push_message.transmission = None;
        assert!(check_push(&none, false, "unknown").is_err());
        let mut unknown = good.clone();
        unknown.audience.cid = Some(vec!["unknown-1".into()]);
        assert_eq!(
            check_push(&unknown, false, "unknown"),
            Err(ParamError("target user is invalid".into()))
        );
        assert!(
            check_push(&good, true, "unknown").is_err(),
            "a cid audience on the alias route"
        );
    }
}
