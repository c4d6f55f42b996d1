//! Message encryption for Web Push (RFC 8291): a fresh ECDH key pair and salt per message,
//! the user agent's `auth` secret mixed in, one `aes128gcm` record (RFC 8188).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::ecdh::diffie_hellman;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// The record size written in the header (one record carries the whole message).
const RECORD_SIZE: u32 = 4096;
/// AES-GCM's tag.
const TAG: usize = 16;
/// Header: salt (16), record size (4), key id length (1), key id (65, the server's key).
pub const HEADER: usize = 16 + 4 + 1 + 65;
/// Padding delimiter of the last (only) record.
const LAST_RECORD: u8 = 0x02;

/// Why a message cannot be encrypted for a subscription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EceError {
    #[error("p256dh is not a P-256 public key: {0}")]
    PublicKey(String),
    #[error("auth must be 16 bytes, got {0}")]
    Auth(usize),
    #[error("the message is {0} bytes; one record takes at most {max}", max = max_plaintext())]
    TooLarge(usize),
    #[error("encryption failed")]
    Cipher,
}

/// The longest plaintext one record carries (4096-byte records: 3993 bytes).
pub const fn max_plaintext() -> usize {
    RECORD_SIZE as usize - TAG - 1 - HEADER
}

/// A subscription's keys: the user agent's public key (`p256dh`) and `auth` secret.
#[derive(Clone)]
pub struct Subscription {
    ua_public: PublicKey,
    auth: [u8; 16],
}

impl Subscription {
    /// From the raw bytes a browser hands out (65-byte uncompressed point, 16-byte secret).
    pub fn new(p256dh: &[u8], auth: &[u8]) -> Result<Self, EceError> {
        let ua_public =
            PublicKey::from_sec1_bytes(p256dh).map_err(|e| EceError::PublicKey(e.to_string()))?;
        let auth: [u8; 16] = auth.try_into().map_err(|_| EceError::Auth(auth.len()))?;
        Ok(Subscription { ua_public, auth })
    }

    /// From the base64url strings of a `PushSubscription.toJSON()` (`keys.p256dh`, `keys.auth`).
    pub fn from_base64(p256dh: &str, auth: &str) -> Result<Self, EceError> {
        let key = crate::unb64(p256dh).map_err(|e| EceError::PublicKey(e.to_string()))?;
        let secret = crate::unb64(auth).map_err(|_| EceError::Auth(0))?;
        Self::new(&key, &secret)
    }
}

/// Encrypts `plaintext` for `subscription` with a fresh key pair and salt: the request body,
/// sent as `Content-Encoding: aes128gcm`.
pub fn encrypt(plaintext: &[u8], subscription: &Subscription) -> Result<Vec<u8>, EceError> {
    let server = SecretKey::random(&mut rand::rngs::OsRng);
    let salt: [u8; 16] = rand::random();
    encrypt_with(plaintext, subscription, &server, &salt)
}

/// [`encrypt`] with a given server key and salt (the RFC's example uses fixed ones).
pub fn encrypt_with(
    plaintext: &[u8],
    subscription: &Subscription,
    server: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > max_plaintext() {
        return Err(EceError::TooLarge(plaintext.len()));
    }
    let as_public = server.public_key().to_encoded_point(false);
    let ua_public = subscription.ua_public.to_encoded_point(false);
    let shared = diffie_hellman(
        server.to_nonzero_scalar(),
        subscription.ua_public.as_affine(),
    );
    // RFC 8291 §3.4: IKM = HKDF(auth, ecdh, "WebPush: info" 0 ua_public as_public, 32).
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(as_public.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&subscription.auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|_| EceError::Cipher)?;
    // RFC 8188 §2.2: CEK and nonce from the salt.
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .and_then(|()| prk.expand(b"Content-Encoding: nonce\0", &mut nonce))
        .map_err(|_| EceError::Cipher)?;
    let mut record = plaintext.to_vec();
    record.push(LAST_RECORD);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| EceError::Cipher)?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &record,
                aad: b"",
            },
        )
        .map_err(|_| EceError::Cipher)?;
    let mut body = Vec::with_capacity(HEADER + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.as_bytes().len() as u8);
    body.extend_from_slice(as_public.as_bytes());
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// A user agent's side: decrypts a one-record `aes128gcm` message with the subscription's
/// private key and `auth` secret (what a browser does; for tests and simulated browsers).
pub fn decrypt(body: &[u8], ua_private: &SecretKey, auth: &[u8; 16]) -> Result<Vec<u8>, EceError> {
    if body.len() < 21 {
        return Err(EceError::Cipher);
    }
    let (salt, rest) = body.split_at(16);
    let idlen = rest[4] as usize;
    let key_id = rest.get(5..5 + idlen).ok_or(EceError::Cipher)?;
    let sealed = rest.get(5 + idlen..).ok_or(EceError::Cipher)?;
    let as_public =
        PublicKey::from_sec1_bytes(key_id).map_err(|e| EceError::PublicKey(e.to_string()))?;
    let ua_public = ua_private.public_key().to_encoded_point(false);
    let shared = diffie_hellman(ua_private.to_nonzero_scalar(), as_public.as_affine());
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(as_public.to_encoded_point(false).as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|_| EceError::Cipher)?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .and_then(|()| prk.expand(b"Content-Encoding: nonce\0", &mut nonce))
        .map_err(|_| EceError::Cipher)?;
    let mut plain = Aes128Gcm::new_from_slice(&cek)
        .map_err(|_| EceError::Cipher)?
        .decrypt(Nonce::from_slice(&nonce), sealed)
        .map_err(|_| EceError::Cipher)?;
    match plain.pop() {
        Some(LAST_RECORD) => Ok(plain),
        _ => Err(EceError::Cipher),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{b64, unb64};

    /// RFC 8291 §5 (example): fixed keys and salt give exactly the RFC's message.
    #[test]
    fn the_rfc_8291_example_encrypts_to_its_bytes() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let server = SecretKey::from_slice(
            &unb64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw").expect("b64"),
        )
        .expect("key");
        assert_eq!(
            b64(server.public_key().to_encoded_point(false).as_bytes()),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
        let ua_private = SecretKey::from_slice(
            &unb64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94").expect("b64"),
        )
        .expect("key");
        let ua_public = b64(ua_private.public_key().to_encoded_point(false).as_bytes());
        assert_eq!(
            ua_public,
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
        );
        let subscription =
            Subscription::from_base64(&ua_public, "BTBZMqHH6r4Tts7J_aSIgg").expect("subscription");
        let salt: [u8; 16] = unb64("DGv6ra1nlYgDCS1FRnbzlw")
            .expect("b64")
            .try_into()
            .expect("16 bytes");
        let body = encrypt_with(plaintext, &subscription, &server, &salt).expect("encrypt");
        assert_eq!(
            b64(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
        let auth: [u8; 16] = unb64("BTBZMqHH6r4Tts7J_aSIgg")
            .expect("b64")
            .try_into()
            .expect("16 bytes");
        assert_eq!(
            decrypt(&body, &ua_private, &auth).expect("decrypt"),
            plaintext,
            "the user agent reads it back"
        );
        let mut tampered = body.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            decrypt(&tampered, &ua_private, &auth),
            Err(EceError::Cipher)
        );
    }

    #[test]
    fn bad_keys_and_big_messages_are_refused_with_a_reason() {
        assert!(matches!(
            Subscription::new(&[4; 65], &[0; 16]),
            Err(EceError::PublicKey(_))
        ));
        let ua = SecretKey::random(&mut rand::rngs::OsRng);
        let point = ua.public_key().to_encoded_point(false);
        assert_eq!(
            Subscription::new(point.as_bytes(), &[0; 15]).err(),
            Some(EceError::Auth(15))
        );
        let s = Subscription::new(point.as_bytes(), &[7; 16]).expect("ok");
        assert!(encrypt(&vec![b'x'; max_plaintext()], &s).is_ok());
        assert_eq!(
            encrypt(&vec![b'x'; max_plaintext() + 1], &s).err(),
            Some(EceError::TooLarge(max_plaintext() + 1))
        );
        // Fresh salt and key each time.
        assert_ne!(encrypt(b"hi", &s).ok(), encrypt(b"hi", &s).ok());
    }
}
