//! VAPID (RFC 8292): the application server's P-256 key, and the ES256 JWT that proves it to
//! a push service (`Authorization: vapid t=<token>, k=<public key>`).

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;

use crate::b64;

/// The longest a token may be valid (RFC 8292 §2: no more than 24 hours).
pub const MAX_VALIDITY_SECS: u64 = 24 * 3600;

/// Why a VAPID key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VapidError {
    #[error("not an EC P-256 private key in PEM (PKCS#8 or SEC1): {0}")]
    Key(String),
    #[error("a token may be valid for at most 24 hours, not {0} s")]
    Validity(u64),
}

/// The application server's key pair.
#[derive(Clone)]
pub struct VapidKey {
    secret: SecretKey,
}

impl std::fmt::Debug for VapidKey {
    /// Shows the public key only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_base64())
            .finish_non_exhaustive()
    }
}

impl VapidKey {
    /// A new random key pair.
    pub fn generate() -> Self {
        VapidKey {
            secret: SecretKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, VapidError> {
        let secret = SecretKey::from_pkcs8_pem(pem)
            .or_else(|pkcs8| {
                SecretKey::from_sec1_pem(pem).map_err(|sec1| format!("{pkcs8}; {sec1}"))
            })
            .map_err(VapidError::Key)?;
        Ok(VapidKey { secret })
    }

    /// The private key as PKCS#8 PEM (what `pushgate vapid-keys` prints to keep).
    pub fn to_pem(&self) -> Result<String, VapidError> {
        self.secret
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| VapidError::Key(e.to_string()))
    }

    /// The public key as base64url (65-byte uncompressed point): the `k` of the header, and
    /// the `applicationServerKey` a page subscribes with.
    pub fn public_base64(&self) -> String {
        b64(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    /// A token for the push service at `audience` (its origin, `https://host[:port]`),
    /// valid until `expires` (epoch seconds, at most 24 h after `now`), naming `subject`
    /// (`mailto:` or `https:` contact).
    pub fn token(
        &self,
        audience: &str,
        subject: &str,
        now: u64,
        expires: u64,
    ) -> Result<String, VapidError> {
        let validity = expires.saturating_sub(now);
        if validity > MAX_VALIDITY_SECS {
            return Err(VapidError::Validity(validity));
        }
        let header = b64(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = b64(
            serde_json::json!({"aud": audience, "exp": expires, "sub": subject})
                .to_string()
                .as_bytes(),
        );
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = SigningKey::from(&self.secret).sign(signing_input.as_bytes());
        Ok(format!("{signing_input}.{}", b64(&signature.to_bytes())))
    }

    /// The `Authorization` header value for a token.
    pub fn authorization(&self, token: &str) -> String {
        format!("vapid t={token}, k={}", self.public_base64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unb64;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    #[test]
    fn tokens_have_the_rfc_8292_shape_and_verify_with_the_public_key() {
        let key = VapidKey::generate();
        let token = key
            .token(
                "https://push.example.net",
                "mailto:ops@example.com",
                1000,
                1000 + 3600,
            )
            .expect("token");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&unb64(parts[0]).expect("b64")).expect("json");
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&unb64(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["exp"], 4600);
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let public = unb64(&key.public_base64()).expect("b64");
        assert_eq!(public.len(), 65);
        let verifier = VerifyingKey::from_sec1_bytes(&public).expect("key");
        let signature = Signature::from_slice(&unb64(parts[2]).expect("b64")).expect("64 bytes");
        verifier
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("valid signature");
        assert_eq!(
            key.authorization(&token),
            format!("vapid t={token}, k={}", key.public_base64())
        );
        assert_eq!(
            key.token("https://a", "mailto:x", 0, MAX_VALIDITY_SECS + 1)
                .err(),
            Some(VapidError::Validity(MAX_VALIDITY_SECS + 1))
        );
    }

    #[test]
    fn keys_round_trip_through_pem_and_sec1_reads_too() {
        let key = VapidKey::generate();
        let pem = key.to_pem().expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = VapidKey::from_pem(&pem).expect("read");
        assert_eq!(back.public_base64(), key.public_base64());
        let sec1 = key.secret.to_sec1_pem(LineEnding::LF).expect("sec1");
        assert_eq!(
            VapidKey::from_pem(&sec1).expect("sec1").public_base64(),
            key.public_base64()
        );
        assert!(matches!(
            VapidKey::from_pem("nonsense"),
            Err(VapidError::Key(_))
        ));
        assert!(
            !format!("{key:?}").contains("PRIVATE"),
            "no secret in Debug"
        );
    }
}
