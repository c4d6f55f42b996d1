//! Device acknowledgements, for providers with no receipts of their own (Web Push): the
//! device gets `{"payload": <app payload>, "ack": "<token>"}` and posts the token to
//! `POST /v1/device-acks`. The token names the delivery and carries an HMAC-SHA256 of it under
//! the gateway's ack secret, so it is its own credential and cannot be forged.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::DeliveryId;

/// Hex characters of the MAC kept in a token (128 bits).
const MAC_HEX: usize = 32;

/// Makes and checks ack tokens. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct AckSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for AckSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckSigner(<secret>)")
    }
}

impl AckSigner {
    /// A signer over `secret` (any length; 32 random bytes are plenty).
    pub fn new(secret: &[u8]) -> Self {
        AckSigner {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(b"pushgate device ack\n");
        mac.update(id.as_bytes());
        mac
    }

    /// The token for a delivery: `<delivery id>.<hex MAC>`.
    pub fn token(&self, id: DeliveryId) -> String {
        let id = id.to_string();
        let mac = hex::encode(self.mac(&id).finalize().into_bytes());
        format!("{id}.{}", &mac[..MAC_HEX])
    }

    /// The delivery a token names, if this gateway made it (constant-time comparison).
    pub fn verify(&self, token: &str) -> Option<DeliveryId> {
        let (id, mac) = token.rsplit_once('.')?;
        let given = hex::decode(mac).ok()?;
        if given.len() * 2 != MAC_HEX {
            return None;
        }
        self.mac(id).verify_truncated_left(&given).ok()?;
        id.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;

    #[test]
    fn tokens_name_their_delivery_and_cannot_be_forged() {
        let signer = AckSigner::new(b"k1");
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 2,
        };
        let token = signer.token(id);
        assert_eq!(signer.verify(&token), Some(id));
        assert!(token.starts_with(&id.to_string()));
        assert_eq!(AckSigner::new(b"k2").verify(&token), None, "another secret");
        let other = DeliveryId { index: 3, ..id };
        let swapped = token.replacen(&id.to_string(), &other.to_string(), 1);
        assert_eq!(signer.verify(&swapped), None, "another delivery");
        for bad in ["", "x", "x.y", &format!("{id}.00"), &format!("{id}")] {
            assert_eq!(signer.verify(bad), None, "{bad:?}");
        }
        assert!(!format!("{signer:?}").contains("k1"));
    }
}
