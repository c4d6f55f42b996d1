//! The app server's answer to `upstream.received`: `{"messages": [<POST /messages bodies>]}`,
//! each sent with `from` set to the upstream sender.

use pushgate_api::request::MessageRequest;
use pushgate_api::upstream::Replies;
use serde::Deserialize;

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    messages: Vec<serde_json::Value>,
}

/// Reads an answer body. An empty body or `{}` asks for nothing.
pub fn parse(body: &[u8], sender: Option<String>) -> Replies {
    let mut replies = Replies::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return replies;
    }
    let parsed: Body = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            replies.malformed = Some(format!("the answer is not {{\"messages\": [...]}}: {e}"));
            return replies;
        }
    };
    for (i, entry) in parsed.messages.into_iter().enumerate() {
        let message = serde_json::from_value::<MessageRequest>(entry)
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_message().map_err(|e| e.to_string()));
        match message {
            Ok(mut m) => {
                m.from = sender.clone();
                replies.messages.push(m);
            }
            Err(reason) => replies.refused.push((i, reason)),
        }
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_api::model::Target;

    #[test]
    fn replies_become_messages_from_the_sender() {
        let body = br#"{"messages": [
            {"to": {"alias": "bob"}, "payload": {"text": "hi"}},
            {"to": {"alias": "bob"}},
            {"to": {"alias": "carol"}, "payload": 1, "from": "mallory", "ttl_seconds": 60}
        ]}"#;
        let r = parse(body, Some("alice".into()));
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].to, Target::Alias("bob".into()));
        assert!(
            r.messages
                .iter()
                .all(|m| m.from.as_deref() == Some("alice")),
            "from is the sender"
        );
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].0, 1);
        assert!(r.malformed.is_none());
    }

    #[test]
    fn empty_and_malformed_answers() {
        assert_eq!(parse(b"", None), Replies::default());
        assert!(parse(b"{}", None).messages.is_empty());
        assert!(parse(b"<html>", None).malformed.is_some());
        assert!(parse(br#"{"messages": "x"}"#, None).malformed.is_some());
    }
}
