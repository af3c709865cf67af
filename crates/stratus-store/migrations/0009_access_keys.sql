-- IAM permanent access keys (AK/SK): a request signed with the secret authenticates as the key's
-- user. Verifying a signature needs the secret itself, so it is kept encrypted (XChaCha20-Poly1305
-- under the credential key, a file in the storage dir), never in the clear.
CREATE TABLE access_keys (
    access TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    -- base64url of nonce || ciphertext.
    secret_enc TEXT NOT NULL,
    -- 'active' or 'inactive'.
    status TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX access_keys_user ON access_keys (user_id);
