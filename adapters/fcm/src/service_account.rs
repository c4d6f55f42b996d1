//! A Google service account (the JSON key file the Firebase console gives) and the RS256
//! assertion that trades it for an access token (RFC 7523, as Google's OAuth 2.0 for
//! service accounts describes it).

use std::fmt;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::json;

use crate::error::FcmError;
use crate::{b64, pem_der};

/// The scope pushgate asks for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The assertion's audience: always Google's token URL, whatever `token_uri` says.
pub const AUDIENCE: &str = "https://oauth2.googleapis.com/token";
/// The OAuth 2.0 grant type of a JWT assertion.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime of an assertion (Google takes at most an hour).
pub const ASSERTION_SECS: u64 = 3600;

/// The fields of a service account key file that matter.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub project_id: String,
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    AUDIENCE.into()
}

impl fmt::Debug for ServiceAccount {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Reads and checks a key file.
    pub fn read(path: &Path) -> Result<Self, FcmError> {
        let fail = |reason: String| FcmError::ServiceAccount {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses and checks a key file's text; the error names the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let account: ServiceAccount =
            serde_json::from_str(text).map_err(|e| format!("not a service account: {e}"))?;
        if !account.kind.is_empty() && account.kind != "service_account" {
            return Err(format!(
                "type is {:?}, expected \"service_account\"",
                account.kind
            ));
        }
        for (key, value) in [
            ("project_id", &account.project_id),
            ("private_key_id", &account.private_key_id),
            ("client_email", &account.client_email),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{key} is empty"));
            }
        }
        let uri: Result<http::Uri, _> = account.token_uri.parse();
        if !matches!(
            uri.as_ref().map(|u| u.scheme_str()),
            Ok(Some("https" | "http"))
        ) {
            return Err(format!(
                "token_uri {:?} is not an http(s) URL",
                account.token_uri
            ));
        }
        account.signer().map_err(|e| e.to_string())?;
        Ok(account)
    }

    /// The key file's JSON (as the Firebase console writes it, the fields that matter).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key,
            "client_email": self.client_email,
            "token_uri": self.token_uri,
        })
    }

    /// The RSA key that signs assertions.
    pub fn signer(&self) -> Result<Signer, FcmError> {
        let der = pem_der(&self.private_key, "PRIVATE KEY")
            .ok_or_else(|| FcmError::Key("private_key is not a PKCS#8 PEM key".into()))?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| FcmError::Key(format!("private_key is not an RSA key: {e}")))?;
        Ok(Signer {
            key,
            rng: SystemRandom::new(),
        })
    }
}

/// Signs assertions with a service account's key.
pub struct Signer {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    /// The DER `RSAPublicKey` that verifies this key's signatures.
    pub fn public_key_der(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        self.key.public_key().as_ref().to_vec()
    }

    /// An RS256 JWT asking for [`SCOPE`], valid from `now` for [`ASSERTION_SECS`].
    pub fn assertion(&self, account: &ServiceAccount, now: u64) -> Result<String, FcmError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": account.private_key_id});
        let claims = json!({
            "iss": account.client_email,
            "scope": SCOPE,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + ASSERTION_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| FcmError::Key("RS256 signing failed".into()))?;
        Ok(format!("{signing_input}.{}", b64(&signature)))
    }
}
