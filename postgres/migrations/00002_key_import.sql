-- Imported keys: API keys that existed before tollgate, moved in with
-- `tollgate key import` (sqlite's 00003_key_import.sql).
--
-- hash_scheme is how keys.hash was computed: '' is tollgate's own
-- HMAC-SHA-256 under the key secret (every key it issues, and plaintext
-- imports); 'sha256' is an imported key's unkeyed SHA-256, as the old API
-- stored it. no_checksum marks a key without tollgate's CRC32 checksum,
-- which the offline check would refuse.

-- +goose Up
ALTER TABLE keys ADD COLUMN hash_scheme TEXT    NOT NULL DEFAULT '' CHECK (hash_scheme IN ('', 'sha256'));
ALTER TABLE keys ADD COLUMN no_checksum BOOLEAN NOT NULL DEFAULT false;

-- Authentication counts the active imported keys (every key cache TTL):
-- the index holds only them.
CREATE INDEX keys_imported ON keys (revoked_at, expires_at)
    WHERE no_checksum OR hash_scheme <> '';

-- +goose Down
DROP INDEX keys_imported;
ALTER TABLE keys DROP COLUMN no_checksum;
ALTER TABLE keys DROP COLUMN hash_scheme;
