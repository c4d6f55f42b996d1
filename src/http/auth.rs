//! App API keys: `Authorization: Bearer <key>`, compared in constant time against the
//! SHA-256 digests of the configured keys (the keys themselves are not kept).

use std::collections::HashMap;

use http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::response::ApiError;
use crate::config::AppConfig;

/// The key digests of every app.
pub struct ApiKeys {
    by_app: HashMap<String, Vec<[u8; 32]>>,
}

impl ApiKeys {
    pub fn new(apps: &[AppConfig]) -> Self {
        ApiKeys {
            by_app: apps
                .iter()
                .map(|a| {
                    let digests = a
                        .api_keys
                        .iter()
                        .map(|k| Sha256::digest(k.as_bytes()).into())
                        .collect();
                    (a.id.clone(), digests)
                })
                .collect(),
        }
    }

    /// Checks that the request carries one of `app`'s keys.
    pub fn check(&self, app: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(digests) = self.by_app.get(app) else {
            return Err(ApiError::not_found(
                "unknown_app",
                format!("no app named {app:?}"),
            ));
        };
        let unauthorized =
            |code, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing_api_key",
                "an Authorization: Bearer <api key> header is required",
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                unauthorized(
                    "invalid_api_key",
                    "the Authorization header must be Bearer <api key>",
                )
            })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut matched = subtle::Choice::from(0u8);
        for known in digests {
            matched |= known.ct_eq(&digest);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(unauthorized(
                "invalid_api_key",
                "the API key is not valid for this app",
            ))
        }
    }
}
