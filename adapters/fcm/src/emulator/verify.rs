//! What the emulator checks, as Google does: the token request's assertion (RS256 signature by
//! the service account's key, header and claims) and the shape of a `messages:send` body.

use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::Value;

use crate::service_account::{ServiceAccount, ASSERTION_SECS, AUDIENCE, GRANT_TYPE, SCOPE};
use crate::unb64;
use crate::wire::{reserved_key, MAX_DATA_BYTES, REQUEST_ID_KEY};

/// Checks a token request's form body; the error is Google's `error_description`.
pub fn token_request(
    form: &str,
    account: &ServiceAccount,
    public_key: &[u8],
    now: u64,
) -> Result<(), String> {
    let mut grant_type = None;
    let mut assertion = None;
    for pair in form.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match key {
            "grant_type" => grant_type = Some(value),
            "assertion" => assertion = Some(value),
            _ => {}
        }
    }
    if grant_type.as_deref() != Some(GRANT_TYPE) {
        return Err(format!("grant_type must be {GRANT_TYPE}"));
    }
    let assertion = assertion.ok_or("no assertion")?;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("the assertion is not a JWT".into());
    };
    let decode = |part: &str, what: &str| -> Result<Value, String> {
        let bytes = unb64(part).ok_or(format!("the JWT {what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the JWT {what} is not JSON: {e}"))
    };
    let header = decode(header, "header")?;
    let claims_json = decode(claims, "claims")?;
    if header["alg"] != "RS256" {
        return Err(format!("alg must be RS256, got {}", header["alg"]));
    }
    if header["kid"] != account.private_key_id.as_str() {
        return Err("kid is not the service account's private_key_id".into());
    }
    let signed = format!("{}.{}", parts[0], parts[1]);
    let signature = unb64(signature).ok_or("the JWT signature is not base64url")?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.".to_string())?;
    if claims_json["iss"] != account.client_email.as_str() {
        return Err("iss is not the service account's client_email".into());
    }
    if claims_json["aud"] != AUDIENCE {
        return Err(format!("aud must be {AUDIENCE}"));
    }
    let scopes = claims_json["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|s| s == SCOPE) {
        return Err(format!("scope must include {SCOPE}"));
    }
    let (Some(iat), Some(exp)) = (claims_json["iat"].as_u64(), claims_json["exp"].as_u64()) else {
        return Err("iat and exp must be numbers".into());
    };
    if exp <= iat || exp - iat > ASSERTION_SECS {
        return Err("exp must be after iat, by at most an hour".into());
    }
    if iat > now + 60 || exp <= now {
        return Err(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe".into(),
        );
    }
    Ok(())
}

const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "token",
    "topic",
    "condition",
];
const ANDROID_FIELDS: &[&str] = &[
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
];

/// Checks a `messages:send` body; returns the message and its registration token, or
/// FCM's `INVALID_ARGUMENT` message.
pub fn send_body(body: &[u8]) -> Result<(Value, String), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("Invalid JSON payload received. Expected an object.".into());
    };
    if let Some(other) = object
        .keys()
        .find(|k| *k != "message" && *k != "validate_only")
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{other}\": Cannot find field."
        ));
    }
    let message = &value["message"];
    let Some(fields) = message.as_object() else {
        return Err("message is required".into());
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !MESSAGE_FIELDS.contains(&k.as_str()))
    {
        return Err(format!("Invalid JSON payload received. Unknown name \"{other}\" at 'message': Cannot find field."));
    }
    let Some(token) = message["token"].as_str() else {
        return Err("Exactly one of message.token, message.topic or message.condition must be set (pushgate sends token)".into());
    };
    if let Some(data) = fields.get("data") {
        let Some(data) = data.as_object() else {
            return Err("Invalid value at 'message.data': expected a map".into());
        };
        let mut bytes = 0;
        for (key, value) in data {
            let Some(text) = value.as_str() else {
                return Err(format!(
                    "Invalid value at 'message.data[{key}]' (TYPE_STRING)"
                ));
            };
            if reserved_key(key) && key != REQUEST_ID_KEY {
                return Err(format!("Invalid data key {key:?}: reserved"));
            }
            bytes += key.len() + text.len();
        }
        if bytes > MAX_DATA_BYTES {
            return Err(format!(
                "Message is too big: data is {bytes} bytes, the limit is {MAX_DATA_BYTES}"
            ));
        }
    }
    if let Some(shown) = fields.get("notification") {
        let Some(shown) = shown.as_object() else {
            return Err("Invalid value at 'message.notification'".into());
        };
        for (key, value) in shown {
            if !matches!(key.as_str(), "title" | "body" | "image") {
                return Err(format!("Invalid JSON payload received. Unknown name \"{key}\" at 'message.notification': Cannot find field."));
            }
            if !value.is_string() {
                return Err(format!(
                    "Invalid value at 'message.notification.{key}' (TYPE_STRING)"
                ));
            }
        }
    }
    if let Some(android) = fields.get("android") {
        let Some(android) = android.as_object() else {
            return Err("Invalid value at 'message.android'".into());
        };
        if let Some(other) = android
            .keys()
            .find(|k| !ANDROID_FIELDS.contains(&k.as_str()))
        {
            return Err(format!("Invalid JSON payload received. Unknown name \"{other}\" at 'message.android': Cannot find field."));
        }
        if let Some(p) = android.get("priority") {
            if !matches!(p.as_str(), Some("high" | "normal" | "HIGH" | "NORMAL")) {
                return Err(format!("Invalid value at 'message.android.priority': {p}"));
            }
        }
        if let Some(ttl) = android.get("ttl") {
            let ok = ttl.as_str().is_some_and(|t| {
                t.strip_suffix('s').is_some_and(|n| {
                    !n.is_empty()
                        && n.parse::<f64>()
                            .is_ok_and(|v| (0.0..=2_419_200.0).contains(&v))
                })
            });
            if !ok {
                return Err(format!("Invalid value at 'message.android.ttl': {ttl}"));
            }
        }
    }
    Ok((message.clone(), token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_bodies_are_checked_as_fcm_does() {
        let ok = br#"{"message": {"token": "t", "data": {"k": "v"}, "android": {"priority": "high", "ttl": "60s"}}}"#;
        assert_eq!(send_body(ok).expect("valid").1, "t");
        for bad in [
            &br#"{"message": {"token": "t", "data": {"k": 1}}}"#[..],
            br#"{"message": {"token": "t", "data": {"from": "x"}}}"#,
            br#"{"message": {"token": "t", "bogus": 1}}"#,
            br#"{"message": {"data": {}}}"#,
            br#"{"message": {"token": "t", "android": {"ttl": "60"}}}"#,
            br#"{"message": {"token": "t", "android": {"priority": "urgent"}}}"#,
            br#"{"msg": {}}"#,
        ] {
            assert!(send_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let big = serde_json::json!({"message": {"token": "t", "data": {"k": "x".repeat(4096)}}});
        assert!(send_body(big.to_string().as_bytes()).is_err());
    }
}
