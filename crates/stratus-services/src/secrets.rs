//! Secrets the store keeps encrypted: the credential key that seals the secrets of access keys,
//! and an access key's secret as signature checks hold it (cached by the store's revision).

use crate::{Result, ServiceError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const NONCE: usize = 24;

/// The key that encrypts the secrets of access keys where they are stored. Nodes sharing a store
/// share it (a file in the storage dir).
#[derive(Clone)]
pub struct CredentialKey(XChaCha20Poly1305);

impl CredentialKey {
    pub fn from_bytes(b: &[u8; 32]) -> CredentialKey {
        CredentialKey(XChaCha20Poly1305::new(b.into()))
    }

    /// A new random key's bytes.
    pub fn generate() -> [u8; 32] {
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        b
    }

    pub(crate) fn seal(&self, access: &str, secret: &str) -> Result<String> {
        let mut nonce = [0u8; NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                chacha20poly1305::aead::Payload {
                    msg: secret.as_bytes(),
                    aad: access.as_bytes(),
                },
            )
            .map_err(|_| ServiceError::Internal("access key encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    pub(crate) fn open(&self, access: &str, sealed: &str) -> Option<Vec<u8>> {
        let b = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if b.len() < NONCE {
            return None;
        }
        let (nonce, ct) = b.split_at(NONCE);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                chacha20poly1305::aead::Payload {
                    msg: ct,
                    aad: access.as_bytes(),
                },
            )
            .ok()
    }
}

/// A key as signature checks need it: its user, whether it is active, its secret.
pub(crate) struct KeySecret {
    pub user_id: String,
    pub active: bool,
    pub secret: Vec<u8>,
}
