//! IAM access keys (AK/SK): permanent keys of a user (at most [`MAX_PER_USER`], active or
//! inactive, the secret shown once), and the authentication of requests signed with one
//! (`crate::signing`), which yields the same [`TokenInfo`] a token of the user on that scope would.

use crate::authz::Authorized;
use crate::identity::{unauthorized, Identity, TokenInfo};
pub use crate::secrets::CredentialKey;
use crate::secrets::KeySecret;
use crate::signing::Checked;
use crate::token::{TemporaryKey, TokenPayload};
use crate::{Result, ServiceError};
use rand::Rng;
use std::sync::Arc;
use stratus_store::{self as store, now_micros, AccessKeyRec, AccessKeyStatus};

/// Most access keys a user may hold (Huawei IAM's limit).
pub const MAX_PER_USER: usize = 2;
/// Longest description of a key.
pub const MAX_DESCRIPTION: usize = 255;
/// Length of an access key id (upper-case letters and digits) and of a secret (letters, digits).
pub const ACCESS_LEN: usize = 20;
pub const SECRET_LEN: usize = 40;
/// Shortest and longest life of a temporary access key, in seconds (Huawei IAM's bounds).
pub const MIN_TEMPORARY_SECS: i64 = 900;
pub const MAX_TEMPORARY_SECS: i64 = 86_400;
/// The authentication method of a request signed with a temporary access key.
pub const TEMPORARY_METHOD: &str = "temporary_access_key";
/// The authentication method of a request signed with a permanent access key.
pub const PERMANENT_METHOD: &str = "access_key";

/// Whether the caller authenticated by signing the request with an access key (not by token).
pub fn is_signed(caller: &TokenInfo) -> bool {
    caller
        .methods
        .iter()
        .any(|m| m == PERMANENT_METHOD || m == TEMPORARY_METHOD)
}

/// Refuses a caller whose credential is narrower or shorter-lived than the user: an application
/// credential (limited to its roles and project) or a temporary access key (limited in time).
/// A permanent access key acts as the user everywhere and for ever, so such a caller must not
/// make, re-enable or remove one.
fn not_from_narrow(caller: &TokenInfo) -> Result<()> {
    if caller.app_cred.is_some() || caller.methods.iter().any(|m| m == TEMPORARY_METHOD) {
        return Err(ServiceError::Forbidden(
            "Access keys are managed with a token of the user's password or a permanent access \
             key, not with an application credential or a temporary access key."
                .into(),
        ));
    }
    Ok(())
}

/// Whether `access` has the form of an access id (so that ids of no possible key are refused
/// before the store is asked, and nothing about them is cached).
fn is_access_form(access: &str) -> bool {
    access.len() == ACCESS_LEN
        && access
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// An access key as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access: String,
    pub user_id: String,
    pub status: AccessKeyStatus,
    pub description: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

impl From<&AccessKeyRec> for AccessKey {
    fn from(r: &AccessKeyRec) -> Self {
        AccessKey {
            access: r.access.clone(),
            user_id: r.user_id.clone(),
            status: r.status,
            description: r.description.clone(),
            created_at: r.created_at,
        }
    }
}

/// A new access id (upper-case letters and digits) and secret (letters and digits), as Huawei's.
fn new_key_pair() -> (String, String) {
    (
        random_of(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", ACCESS_LEN),
        random_of(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            SECRET_LEN,
        ),
    )
}

fn random_of(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(ServiceError::BadRequest(format!(
            "The description is longer than {MAX_DESCRIPTION} characters."
        )));
    }
    Ok(())
}

impl Identity {
    /// Makes an access key of `user_id` (a user the caller sees). Returns it with its secret,
    /// which is never shown again.
    pub async fn create_access_key(
        &self,
        caller: &Authorized,
        user_id: &str,
        description: &str,
    ) -> Result<(AccessKey, String)> {
        check_description(description)?;
        let user = crate::directory::visible_user(self.store(), caller, user_id).await?;
        not_from_narrow(caller)?;
        let (access, secret) = new_key_pair();
        let rec = AccessKeyRec {
            secret_enc: self.credential_key().seal(&access, &secret)?,
            access,
            user_id: user.id.clone(),
            status: AccessKeyStatus::Active,
            description: description.to_string(),
            created_at: now_micros(),
        };
        let mut w = self.store().write_identity().await?;
        // Counted inside the write transaction under the user's lock (SQLite serialises every
        // write; PostgreSQL nodes take the lock): two creations at once cannot both pass.
        store::advisory_lock(&mut w, crate::lock_key("access-keys", &user.id)).await?;
        if store::access_keys_of_user(w.conn(), &user.id).await?.len() >= MAX_PER_USER {
            // Huawei IAM's message, word for word: clients match it.
            return Err(ServiceError::BadRequest("akSkNumExceed".into()));
        }
        store::access_key_insert(w.conn(), &rec).await?;
        self.store().commit(w).await?;
        Ok((AccessKey::from(&rec), secret))
    }

    /// The access keys of `user_id` (a user the caller sees), oldest first.
    pub async fn list_access_keys(
        &self,
        caller: &Authorized,
        user_id: &str,
    ) -> Result<Vec<AccessKey>> {
        let user = crate::directory::visible_user(self.store(), caller, user_id).await?;
        let recs = store::access_keys_of_user(self.store().pool(), &user.id).await?;
        Ok(recs.iter().map(AccessKey::from).collect())
    }

    /// The key `access`, if its user is one the caller sees (404 otherwise).
    pub async fn get_access_key(&self, caller: &TokenInfo, access: &str) -> Result<AccessKey> {
        let rec = store::access_key_get(self.store().pool(), access)
            .await?
            .ok_or_else(|| ServiceError::not_found("access key", access))?;
        crate::directory::visible_user(self.store(), caller, &rec.user_id)
            .await
            .map_err(|_| ServiceError::not_found("access key", access))?;
        Ok(AccessKey::from(&rec))
    }

    /// Changes a key's status and description; an inactive key authenticates nothing from the
    /// next request on, on every node.
    pub async fn update_access_key(
        &self,
        caller: &Authorized,
        access: &str,
        status: Option<AccessKeyStatus>,
        description: Option<&str>,
    ) -> Result<AccessKey> {
        if let Some(d) = description {
            check_description(d)?;
        }
        self.get_access_key(caller, access).await?;
        not_from_narrow(caller)?;
        let mut w = self.store().write_identity().await?;
        if !store::access_key_update(w.conn(), access, status, description).await? {
            return Err(ServiceError::not_found("access key", access));
        }
        let rec = store::access_key_get(w.conn(), access)
            .await?
            .ok_or_else(|| ServiceError::not_found("access key", access))?;
        self.store().commit(w).await?;
        Ok(AccessKey::from(&rec))
    }

    pub async fn delete_access_key(&self, caller: &Authorized, access: &str) -> Result<()> {
        let k = self.get_access_key(caller, access).await?;
        not_from_narrow(caller)?;
        let mut w = self.store().write_identity().await?;
        store::access_key_delete(w.conn(), &k.access).await?;
        self.store().commit(w).await?;
        Ok(())
    }

    /// Makes a temporary access key of the caller, valid `duration_secs` (900 to 86,400, and at
    /// most the token lifetime, so that the token keys sealing it outlive it): its access id,
    /// secret, security token and expiry (microseconds). Nothing is stored: the security token
    /// carries the key, sealed like a token, and requests signed with the key must send it.
    pub async fn create_temporary_key(
        &self,
        caller: &Authorized,
        duration_secs: i64,
    ) -> Result<(String, String, String, i64)> {
        not_from_narrow(caller)?;
        let max = (self.token_ttl_micros() / 1_000_000).min(MAX_TEMPORARY_SECS);
        if !(MIN_TEMPORARY_SECS..=max).contains(&duration_secs) {
            return Err(ServiceError::BadRequest(format!(
                "Invalid duration_seconds: {MIN_TEMPORARY_SECS} to {max}."
            )));
        }
        let (access, secret) = new_key_pair();
        let now = now_micros();
        let expires_at = now + duration_secs * 1_000_000;
        let sealed = self.seal(&TokenPayload {
            user_id: caller.user.id.clone(),
            project_id: None,
            domain_id: None,
            methods: vec![TEMPORARY_METHOD.to_string()],
            issued_at: now,
            expires_at,
            audit_id: crate::token::new_audit_id(),
            app_cred: None,
            temporary_key: Some(TemporaryKey {
                access: access.clone(),
                secret: secret.clone(),
            }),
        })?;
        Ok((access, secret, sealed, expires_at))
    }

    /// Authenticates a signed request: its key active and its signature made with the key's
    /// secret, then the key's user on the scope the request names (`X-Project-Id`, else
    /// `X-Domain-Id`, else none), checked as a token of that user on that scope would be. With
    /// `X-Security-Token`, the key is the temporary one that token seals.
    pub async fn authenticate_signed(
        &self,
        checked: &Checked,
        project_id: Option<&str>,
        domain_id: Option<&str>,
        security_token: Option<&str>,
    ) -> Result<TokenInfo> {
        let g = self.sync_generation().await?;
        let access = &checked.auth.access;
        if let Some(st) = security_token {
            let p = self.decode_sealed(st).await?;
            let key = p
                .temporary_key
                .as_ref()
                .filter(|k| &k.access == access)
                .ok_or_else(|| unauthorized("the security token is not the access key's"))?;
            checked
                .verify(key.secret.as_bytes())
                .map_err(|e| unauthorized(format!("temporary access key {access}: {e}")))?;
            let (project_id, domain_id) = self
                .signed_scope(g, &p.user_id, project_id, domain_id)
                .await?;
            let payload = TokenPayload {
                project_id,
                domain_id,
                temporary_key: None,
                ..p
            };
            return self.check_payload(g, payload).await;
        }
        let key = self
            .cached_key_secret(g, access)
            .await?
            .ok_or_else(|| unauthorized(format!("unknown access key {access}")))?;
        checked
            .verify(&key.secret)
            .map_err(|e| unauthorized(format!("access key {access}: {e}")))?;
        if !key.active {
            return Err(unauthorized(format!("access key {access} is inactive")));
        }
        let now = now_micros();
        let (project_id, domain_id) = self
            .signed_scope(g, &key.user_id, project_id, domain_id)
            .await?;
        let payload = TokenPayload {
            user_id: key.user_id.clone(),
            project_id,
            domain_id,
            methods: vec![PERMANENT_METHOD.to_string()],
            issued_at: now,
            expires_at: now + crate::signing::MAX_SKEW_SECS * 1_000_000,
            audit_id: format!("ak-{access}"),
            app_cred: None,
            temporary_key: None,
        };
        self.check_payload(g, payload).await
    }

    async fn cached_key_secret(&self, g: i64, access: &str) -> Result<Option<Arc<KeySecret>>> {
        if !is_access_form(access) {
            return Ok(None);
        }
        if let Some(v) = self.access_keys.get(access) {
            return Ok(Some(v));
        }
        // Only keys that exist are cached (a memo of misses would grow with every id tried).
        let v = match store::access_key_get(self.store().pool(), access).await? {
            Some(rec) => {
                let secret = self
                    .credential_key()
                    .open(&rec.access, &rec.secret_enc)
                    .ok_or_else(|| {
                        ServiceError::Internal(format!(
                            "the secret of access key {access} does not decrypt: is the \
                             credential key the one it was made with?"
                        ))
                    })?;
                Arc::new(KeySecret {
                    user_id: rec.user_id,
                    active: rec.status == AccessKeyStatus::Active,
                    secret,
                })
            }
            None => return Ok(None),
        };
        self.put_cached(&self.access_keys, g, access, v.clone());
        Ok(Some(v))
    }
}
