//! Getui's signatures: SHA-256 for auth, MD5 for receipts and (pushgate's) upstream lines.

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// `sign` of `POST /auth`: lowercase hex SHA-256 of appkey + timestamp + mastersecret.
pub fn auth_sign(app_key: &str, timestamp: &str, master_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(app_key.as_bytes());
    h.update(timestamp.as_bytes());
    h.update(master_secret.as_bytes());
    hex::encode(h.finalize())
}

/// `sign` of a receipt line: lowercase hex MD5 of appid + cid + taskid + msgid + masterSecret.
pub fn receipt_sign(
    app_id: &str,
    cid: &str,
    task_id: &str,
    msg_id: &str,
    master_secret: &str,
) -> String {
    md5_hex(&[app_id, cid, task_id, msg_id, master_secret])
}

/// `sign` of an upstream line: lowercase hex MD5 of appid + cid + msgid + payload + masterSecret.
pub fn upstream_sign(
    app_id: &str,
    cid: &str,
    msg_id: &str,
    payload: &str,
    master_secret: &str,
) -> String {
    md5_hex(&[app_id, cid, msg_id, payload, master_secret])
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Compares two hex signatures without an early exit (case-insensitive).
pub fn same_sign(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_sign_matches_the_spec_vectors() {
        assert_eq!(
            auth_sign("testAppKey", "1608172111917", "testMasterSecret"),
            "ecc64c98018b09638f6fe236706de75fbc6f11ddb62309606f852937b8ef2ff5"
        );
        // The official PHP client's captured auth request.
        assert_eq!(
            auth_sign("APPKEY_x", "1795916118732", "MASTERSECRET_x"),
            "c015e7b7fa621493ec0676219ecda8a33791a5d230aa08e1ff4c081373265806"
        );
    }

    #[test]
    fn receipt_sign_matches_the_spec_vector() {
        assert_eq!(
            receipt_sign(
                "testAppId",
                "cid123",
                "RASS_0101_abc",
                "msg456",
                "testMasterSecret"
            ),
            "72d63f4a5ab14c3459b3cc7b3b91ba36"
        );
    }

    #[test]
    fn signs_compare_case_insensitively_and_exactly() {
        assert!(same_sign("abcd", "ABCD"));
        assert!(!same_sign("abcd", "abce"));
        assert!(!same_sign("abcd", "abc"));
    }
}
