//! Opaque tokens: a small payload encrypted and authenticated with XChaCha20-Poly1305 under a key
//! kept in the metadata store, so any node can validate a token without looking it up.
//!
//! Wire form: base64url (no padding) of `version (1 byte) | key id (4 bytes, big endian) |
//! nonce (24 bytes) | ciphertext+tag`. The first five bytes are authenticated as associated data.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;
const HEADER: usize = 5;
const NONCE: usize = 24;
/// Longest token accepted for decoding; anything longer is rejected before any work.
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a token says. Names are not carried: they are looked up at validation so renames show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPayload {
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<String>,
    #[serde(rename = "m")]
    pub methods: Vec<String>,
    /// Microseconds since the epoch.
    #[serde(rename = "i")]
    pub issued_at: i64,
    #[serde(rename = "e")]
    pub expires_at: i64,
    #[serde(rename = "a")]
    pub audit_id: String,
    /// The application credential the token was made with.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub app_cred: Option<String>,
    /// Set in a security token (a temporary access key's): the key it goes with. Such a payload
    /// is never a token.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub temporary_key: Option<TemporaryKey>,
}

/// A temporary access key, carried sealed in its security token (nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporaryKey {
    #[serde(rename = "a")]
    pub access: String,
    #[serde(rename = "s")]
    pub secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token was signed with an unknown key")]
    UnknownKey,
    #[error("token failed authentication")]
    Tampered,
}

/// Encrypts and decrypts tokens. Holds every known key; new tokens use the newest.
#[derive(Clone)]
pub struct TokenCodec {
    keys: Vec<(u32, XChaCha20Poly1305)>,
}

impl TokenCodec {
    /// `keys` are `(id, 32-byte secret)`; at least one is needed to issue tokens.
    pub fn new(keys: &[(u32, [u8; 32])]) -> Self {
        let mut keys: Vec<_> = keys
            .iter()
            .map(|(id, k)| (*id, XChaCha20Poly1305::new(k.into())))
            .collect();
        keys.sort_by_key(|(id, _)| *id);
        TokenCodec { keys }
    }

    /// A fresh random 32-byte key, encoded for storage.
    pub fn generate_secret() -> String {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        URL_SAFE_NO_PAD.encode(k)
    }

    pub fn decode_secret(s: &str) -> Option<[u8; 32]> {
        URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
    }

    pub fn encode(&self, payload: &TokenPayload) -> Option<String> {
        let (id, cipher) = self.keys.last()?;
        let mut header = [0u8; HEADER];
        header[0] = VERSION;
        header[1..].copy_from_slice(&id.to_be_bytes());
        let mut nonce = [0u8; NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let plain = serde_json::to_vec(payload).ok()?;
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &header,
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(HEADER + NONCE + ct.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    pub fn decode(&self, token: &str) -> Result<TokenPayload, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if raw.len() < HEADER + NONCE + 16 || raw[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let (header, rest) = raw.split_at(HEADER);
        let (nonce, ct) = rest.split_at(NONCE);
        let key_id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| *id == key_id)
            .ok_or(TokenError::UnknownKey)?;
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map_err(|_| TokenError::Tampered)?;
        serde_json::from_slice(&plain).map_err(|_| TokenError::Malformed)
    }
}

/// A random audit id in Keystone's form (22 characters of url-safe base64).
pub fn new_audit_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> TokenPayload {
        TokenPayload {
            user_id: "u1".into(),
            project_id: Some("p1".into()),
            domain_id: None,
            methods: vec!["password".into()],
            issued_at: 1,
            expires_at: 2,
            audit_id: new_audit_id(),
            app_cred: None,
            temporary_key: None,
        }
    }

    #[test]
    fn round_trip() {
        let codec = TokenCodec::new(&[(1, [7u8; 32])]);
        let p = payload();
        let t = codec.encode(&p).expect("encode");
        assert_eq!(codec.decode(&t), Ok(p));
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let codec = TokenCodec::new(&[(1, [7u8; 32])]);
        let t = codec.encode(&payload()).expect("encode");
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let s = URL_SAFE_NO_PAD.encode(&bad);
            assert!(codec.decode(&s).is_err(), "flipping byte {i} was accepted");
        }
    }

    #[test]
    fn other_key_is_rejected() {
        let a = TokenCodec::new(&[(1, [7u8; 32])]);
        let b = TokenCodec::new(&[(1, [8u8; 32])]);
        let t = a.encode(&payload()).unwrap();
        assert_eq!(b.decode(&t), Err(TokenError::Tampered));
        let c = TokenCodec::new(&[(2, [7u8; 32])]);
        assert_eq!(c.decode(&t), Err(TokenError::UnknownKey));
    }

    #[test]
    fn garbage_is_malformed() {
        let a = TokenCodec::new(&[(1, [7u8; 32])]);
        for s in ["", "abc", "!!!!", &"A".repeat(2000)] {
            assert_eq!(a.decode(s), Err(TokenError::Malformed), "{s:?}");
        }
    }
}
