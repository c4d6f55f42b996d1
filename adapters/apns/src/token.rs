//! The provider token: an ES256 JWT signed with the team's `.p8` key, reused for 40 minutes
//! (Apple refuses tokens older than an hour and renewals more often than every 20).

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::json;

use crate::b64;
use crate::error::ApnsError;

/// How long one token is used.
pub const TOKEN_REUSE: Duration = Duration::from_secs(40 * 60);

/// A team's APNs signing key (`AuthKey_<key id>.p8`).
#[derive(Clone)]
pub struct ProviderKey {
    key: SigningKey,
}

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderKey(<redacted>)")
    }
}

impl ProviderKey {
    /// A new random key (tests and the emulator).
    pub fn generate() -> Self {
        ProviderKey {
            key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// Reads a `.p8` file (PKCS#8 PEM, as Apple's developer site gives it).
    pub fn read(path: &Path) -> Result<Self, ApnsError> {
        let fail = |reason: String| ApnsError::Key {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::from_pem(&pem).map_err(fail)
    }

    pub fn from_pem(pem: &str) -> Result<Self, String> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| ProviderKey { key })
            .map_err(|e| format!("not an EC P-256 PKCS#8 key: {e}"))
    }

    /// The key as a `.p8` file's text.
    pub fn to_pem(&self) -> Result<String, String> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|e| e.to_string())
    }

    /// What checks its tokens.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// A token for `team_id` and `key_id` issued at `iat` (epoch seconds).
    pub fn token(&self, team_id: &str, key_id: &str, iat: u64) -> String {
        let header = json!({"alg": "ES256", "kid": key_id});
        let claims = json!({"iss": team_id, "iat": iat});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }
}

struct Current {
    token: String,
    renew_at: Instant,
}

/// The token in use, renewed after [`TOKEN_REUSE`] or when APNs says it expired.
pub(crate) struct TokenCache {
    key: ProviderKey,
    team_id: String,
    key_id: String,
    current: Mutex<Option<Current>>,
    /// The `iat` of the last token made: a renewal within the same second must differ.
    last_iat: Mutex<u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenCache {
    pub fn new(key: ProviderKey, team_id: &str, key_id: &str) -> Self {
        TokenCache {
            key,
            team_id: team_id.into(),
            key_id: key_id.into(),
            current: Mutex::new(None),
            last_iat: Mutex::new(0),
        }
    }

    /// The token to send with.
    pub fn get(&self) -> String {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = current.as_ref() {
            if Instant::now() < c.renew_at {
                return c.token.clone();
            }
        }
        let mut last = self.last_iat.lock().unwrap_or_else(|p| p.into_inner());
        let iat = now_secs().max(*last + 1);
        *last = iat;
        let token = self.key.token(&self.team_id, &self.key_id, iat);
        *current = Some(Current {
            token: token.clone(),
            renew_at: Instant::now() + TOKEN_REUSE,
        });
        token
    }

    /// Drops `token` after APNs called it expired (a newer one stays).
    pub fn expired(&self, token: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|c| c.token == token) {
            *current = None;
        }
    }
}
