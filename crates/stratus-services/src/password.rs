//! Password hashing with argon2id (PHC string format), run off the async executor.

use crate::{Result, ServiceError};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(e.to_string()))?
}

/// Password checks made by this process (for tests that a path pays for one).
static VERIFICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn verifications() -> u64 {
    VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// True if `password` matches the stored hash. A malformed stored hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    VERIFICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tokio::task::spawn_blocking(move || match PasswordHash::new(&stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    })
    .await
    .unwrap_or(false)
}

/// A hash no password matches (nobody knows the random one it was made of), verified in place
/// of a missing user's so that an unknown name costs what a wrong password does.
static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Verifies `password` against a hash that never matches, taking the time a real check takes.
pub async fn verify_nothing(password: String) {
    let stored = match DUMMY.get() {
        Some(h) => h.clone(),
        None => {
            let random = crate::new_id();
            let h = hash(random).await.unwrap_or_default();
            DUMMY.get_or_init(|| h).clone()
        }
    };
    let _ = verify(password, stored).await;
}
