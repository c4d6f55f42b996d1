//! Validation of the identifiers that appear in API paths, bodies and store keys.

/// Longest alias accepted: Getui allows aliases "under 40 characters".
pub const MAX_ALIAS_CHARS: usize = 39;
/// Longest client id accepted.
pub const MAX_CID_CHARS: usize = 64;
/// Longest provider or app name accepted.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest idempotency key accepted.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// Why an identifier was refused; the text is a human sentence for API errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// An alias: 1 to 39 characters, letters (any script, CJK included), digits, `_ - . @`.
pub fn alias(value: &str) -> Result<(), Invalid> {
    let n = value.chars().count();
    if n == 0 {
        return Err(Invalid("alias must not be empty".into()));
    }
    if n > MAX_ALIAS_CHARS {
        return Err(Invalid(format!(
            "alias is {n} characters long; the limit is {MAX_ALIAS_CHARS}"
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')))
    {
        return Err(Invalid(format!(
            "alias contains {c:?}; allowed are letters, digits and _ - . @"
        )));
    }
    Ok(())
}

/// The sending limits of a provider's settings: `concurrency` 1–4096, `qps` at least 1 when
/// given, `timeout_ms` at least 1, and `receipt_timeout_ms` only with `device_acks` (a
/// provider with no receipts of its own); the error names the key.
pub fn sending_limits(
    concurrency: usize,
    qps: Option<u32>,
    timeout_ms: u64,
    device_acks: bool,
    receipt_timeout_ms: u64,
) -> Result<(), Invalid> {
    let bad = |m: &str| Err(Invalid(m.into()));
    if concurrency == 0 || concurrency > 4096 {
        return bad("concurrency must be between 1 and 4096");
    }
    if qps == Some(0) {
        return bad("qps must be at least 1 (leave it out for no cap)");
    }
    if timeout_ms == 0 {
        return bad("timeout_ms must be at least 1");
    }
    if receipt_timeout_ms > 0 && !device_acks {
        return bad("receipt_timeout_ms needs device_acks = true (this provider has no receipts)");
    }
    Ok(())
}

/// A provider client id: 1 to 64 ASCII letters, digits or `_ - . :`.
pub fn cid(value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid("cid must not be empty".into()));
    }
    if value.len() > MAX_CID_CHARS {
        return Err(Invalid(format!(
            "cid is {} characters long; the limit is {MAX_CID_CHARS}",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(Invalid(format!(
            "cid contains {c:?}; allowed are ASCII letters, digits and _ - . :"
        )));
    }
    Ok(())
}

/// A provider or app name: 1 to 32 of `a-z 0-9 _ -`.
pub fn name(what: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > MAX_NAME_CHARS {
        return Err(Invalid(format!(
            "{what} must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(Invalid(format!(
            "{what} {value:?} may only contain a-z, 0-9, _ and -"
        )));
    }
    Ok(())
}

/// A client idempotency key: 1 to 128 printable characters.
pub fn request_id(value: &str) -> Result<(), Invalid> {
    let n = value.chars().count();
    if n == 0 || n > MAX_REQUEST_ID_CHARS {
        return Err(Invalid(format!(
            "request_id must be 1 to {MAX_REQUEST_ID_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid(
            "request_id must not contain control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert!(alias("bob").is_ok());
        assert!(alias("用户_42").is_ok());
        assert!(alias("a.b-c@d").is_ok());
        assert!(alias(&"x".repeat(39)).is_ok());
        assert!(alias(&"x".repeat(40)).is_err());
        assert!(alias("").is_err());
        assert!(alias("a b").is_err());
        assert!(alias("a\0b").is_err());
        assert!(alias("a/b").is_err());
    }

    #[test]
    fn cids() {
        assert!(cid("0a1b2c3d4e5f60718293a4b5c6d7e8f9").is_ok());
        assert!(cid("").is_err());
        assert!(cid(&"c".repeat(65)).is_err());
        assert!(cid("c\u{e9}").is_err());
        assert!(cid("c\0").is_err());
    }

    #[test]
    fn names() {
        assert!(name("provider", "getui-cn_2").is_ok());
        assert!(name("provider", "Getui").is_err());
        assert!(name("provider", "").is_err());
        assert!(name("provider", "a\0").is_err());
    }
}
