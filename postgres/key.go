package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate"
)

func errKeyNotFound(id string) error {
	return tollgate.Errorf(tollgate.CodeNotFound, "Key %q not found.", id)
}

// activeNameIndex is the unique index on an org's active key names
// (migrations/00001_init.sql): its violation is the name conflict.
const activeNameIndex = "keys_org_active_name"

// CreateKey stores key; conflict when an active key of the org has the same
// name (or the ID or hash exists), not_found when the org is unknown. An
// empty ID is assigned ("key_" + 26 random characters) and a zero CreatedAt
// set to s.Now(), both on key too.
func (s *Store) CreateKey(ctx context.Context, key *tollgate.Key) error {
	return wrap("create key", s.insertKey(ctx, s.pool, key))
}

// insertKey inserts key with q (the pool or a transaction).
func (s *Store) insertKey(ctx context.Context, q execer, key *tollgate.Key) error {
	if key.ID == "" {
		key.ID = newID("key_")
	}
	if key.CreatedAt.IsZero() {
		key.CreatedAt = s.now()
	}
	if len(key.Hash) == 0 {
		return errors.New("key has no hash")
	}
	var times [3]*int64
	for i, t := range []time.Time{key.ExpiresAt, key.RevokedAt, key.CreatedAt} {
		var err error
		if times[i], err = encodeTime(t); err != nil {
			return err
		}
	}
	scheme, err := encodeScheme(key.HashScheme)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `
		INSERT INTO keys (id, org_id, name, prefix, hash, models, rpm, scopes, expires_at, revoked_at, created_at,
			hash_scheme, no_checksum)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		key.ID, key.OrgID, key.Name, key.Prefix, key.Hash, stringList(key.Models), key.RPM,
		stringList(key.Scopes), times[0], times[1], times[2], scheme, key.NoChecksum)
	switch {
	case isUnique(err):
		if pgError(err).ConstraintName == activeNameIndex {
			return tollgate.Errorf(tollgate.CodeConflict, "An active key named %q already exists.", key.Name)
		}
		return tollgate.Errorf(tollgate.CodeConflict, "Key already exists.")
	case isForeignKey(err):
		return errOrgNotFound(key.OrgID)
	}
	return err
}

const keyColumns = `id, org_id, name, prefix, hash, models, rpm, scopes, expires_at, revoked_at, created_at,
	hash_scheme, no_checksum`

// encodeScheme stores HashHMAC as the empty string (the column's default,
// what every key before imports holds), so a Key's zero HashScheme
// round-trips.
func encodeScheme(s tollgate.HashScheme) (string, error) {
	switch s {
	case "", tollgate.HashHMAC:
		return "", nil
	case tollgate.HashSHA256:
		return string(s), nil
	}
	return "", fmt.Errorf("unknown hash scheme %q", s)
}

// keyFields are the Scan destinations of keyColumns that need decoding.
type keyFields struct {
	expires, revoked, created *int64
	scheme                    string
}

func (f *keyFields) dest(k *tollgate.Key) []any {
	return []any{&k.ID, &k.OrgID, &k.Name, &k.Prefix, &k.Hash, &k.Models, &k.RPM, &k.Scopes,
		&f.expires, &f.revoked, &f.created, &f.scheme, &k.NoChecksum}
}

func (f *keyFields) finish(k *tollgate.Key) *tollgate.Key {
	k.Models = emptyNil(k.Models)
	k.Scopes = emptyNil(k.Scopes)
	k.ExpiresAt = decodeTime(f.expires)
	k.RevokedAt = decodeTime(f.revoked)
	k.CreatedAt = decodeTime(f.created)
	k.HashScheme = tollgate.HashScheme(f.scheme)
	return k
}

func scanKey(row pgx.Row) (*tollgate.Key, error) {
	var k tollgate.Key
	var f keyFields
	if err := row.Scan(f.dest(&k)...); err != nil {
		return nil, err
	}
	return f.finish(&k), nil
}

// Key returns the key with id; not_found when there is none.
func (s *Store) Key(ctx context.Context, id string) (*tollgate.Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errKeyNotFound(id)
	}
	if err != nil {
		return nil, wrap("find key", err)
	}
	return k, nil
}

// KeyByHash returns the key with hash, active or not; not_found when there
// is none.
func (s *Store) KeyByHash(ctx context.Context, hash []byte) (*tollgate.Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, tollgate.Errorf(tollgate.CodeNotFound, "Key not found.")
	}
	if err != nil {
		return nil, wrap("find key by hash", err)
	}
	return k, nil
}

// Keys lists the org's keys, oldest first (ties in insertion order);
// not_found when the org is unknown.
func (s *Store) Keys(ctx context.Context, orgID string) ([]*tollgate.Key, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+keyColumns+` FROM keys WHERE org_id = $1 ORDER BY created_at, seq`, orgID)
	if err != nil {
		return nil, wrap("list keys", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*tollgate.Key, error) { return scanKey(row) })
	if err != nil {
		return nil, wrap("list keys", err)
	}
	if len(out) > 0 {
		return out, nil // a key's org exists (foreign key), and orgs are never deleted
	}
	var one int
	err = s.pool.QueryRow(ctx, `SELECT 1 FROM orgs WHERE id = $1`, orgID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errOrgNotFound(orgID)
	}
	return nil, wrap("list keys", err)
}

// RevokeKey marks the key revoked at at; revoking a revoked key keeps the
// first time. not_found when the key is unknown. A revoked key's name is
// free at once, whatever at is.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("postgres: revoke key %q: zero revocation time", id)
	}
	revoked, err := encodeTime(at)
	if err != nil {
		return wrap("revoke key", err)
	}
	tag, err := s.pool.Exec(ctx,
		`UPDATE keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, revoked, id)
	if err != nil {
		return wrap("revoke key", err)
	}
	if tag.RowsAffected() == 0 {
		return errKeyNotFound(id)
	}
	return nil
}

// RotateKey stores next and, in the same transaction, marks the old key
// replaced by it (freeing its name) and sets its expiry to oldExpiresAt when
// that is earlier than its own (a zero oldExpiresAt leaves it unchanged).
// The caller copies the settings onto next. not_found when the old key is
// unknown; conflict when it is revoked or already rotated, or when next
// conflicts as in CreateKey. The old key's row is locked first, so of two
// concurrent rotations of a key one is a conflict.
func (s *Store) RotateKey(ctx context.Context, oldID string, next *tollgate.Key, oldExpiresAt time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var expires, revoked *int64
		var replacedBy *string
		err := tx.QueryRow(ctx, `SELECT expires_at, revoked_at, replaced_by FROM keys WHERE id = $1 FOR UPDATE`, oldID).
			Scan(&expires, &revoked, &replacedBy)
		if errors.Is(err, pgx.ErrNoRows) {
			return errKeyNotFound(oldID)
		}
		if err != nil {
			return err
		}
		if revoked != nil {
			return tollgate.Errorf(tollgate.CodeConflict, "Key %q is revoked.", oldID)
		}
		if replacedBy != nil {
			return tollgate.Errorf(tollgate.CodeConflict, "Key %q has already been rotated.", oldID)
		}
		exp := decodeTime(expires)
		if !oldExpiresAt.IsZero() && (exp.IsZero() || oldExpiresAt.Before(exp)) {
			exp = oldExpiresAt
		}
		newExpires, err := encodeTime(exp)
		if err != nil {
			return err
		}
		if next.ID == "" {
			next.ID = newID("key_")
		}
		// Old first, so next may take its name; replaced_by's foreign key
		// is checked at commit.
		if _, err := tx.Exec(ctx,
			`UPDATE keys SET replaced_by = $1, expires_at = $2 WHERE id = $3`, next.ID, newExpires, oldID); err != nil {
			return err
		}
		return s.insertKey(ctx, tx, next)
	})
	return wrap("rotate key", err)
}

// ImportKeys stores keys in one transaction: all or none.
func (s *Store) ImportKeys(ctx context.Context, keys []*tollgate.Key) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, k := range keys {
			if err := s.insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap("import keys", err)
}

// CountImportedKeys counts the keys active at now that have no checksum or
// a SHA-256 hash (through the keys_imported index, which holds only them).
func (s *Store) CountImportedKeys(ctx context.Context, now time.Time) (tollgate.ImportedKeys, error) {
	var n tollgate.ImportedKeys
	at := nanos(now)
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE no_checksum), count(*) FILTER (WHERE hash_scheme = 'sha256')
		FROM keys
		WHERE (no_checksum OR hash_scheme <> '')
			AND (revoked_at IS NULL OR revoked_at > $1) AND (expires_at IS NULL OR expires_at > $1)`,
		at).Scan(&n.NoChecksum, &n.SHA256)
	if err != nil {
		return tollgate.ImportedKeys{}, wrap("count imported keys", err)
	}
	return n, nil
}

// accessQuery reads a key, its org and plan, and the org's grants and
// overrides, in one statement (one snapshot, one round trip).
const accessQuery = `
	SELECT k.id, k.org_id, k.name, k.prefix, k.hash, k.models, k.rpm, k.scopes,
		k.expires_at, k.revoked_at, k.created_at, k.hash_scheme, k.no_checksum,
		o.id, o.name, o.plan_id, o.created_at,
		o.billing_active, o.monthly_credit_limit, o.monthly_limits,
		p.id, p.rpm, p.concurrency, p.model_concurrency, p.features,
		p.billing_required, p.free_credits, p.monthly_credit_cap, p.monthly_limits,
		ARRAY(SELECT g.model FROM grants g WHERE g.org_id = o.id),
		` + overridesOf + `
	FROM keys k
	JOIN orgs o ON o.id = k.org_id
	JOIN plans p ON p.id = o.plan_id
	WHERE k.hash = $1`

// Access resolves a key hash to the key (active or not: the caller checks
// Key.Active), its org and plan, the org's grants and its concurrency
// overrides. invalid_credential when the hash is unknown.
func (s *Store) Access(ctx context.Context, hash []byte) (*tollgate.Access, error) {
	var (
		k       tollgate.Key
		o       tollgate.Org
		p       tollgate.Plan
		kf      keyFields
		of      orgFields
		pf      planFields
		granted []string
		a       = &tollgate.Access{Key: &k, Org: &o, Plan: &p, Grants: map[string]bool{}}
	)
	dest := append(kf.dest(&k), of.dest(&o)...)
	dest = append(dest, pf.dest(&p)...)
	dest = append(dest, &granted, &a.Concurrency)
	err := s.pool.QueryRow(ctx, accessQuery, hash).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, tollgate.NewError(tollgate.CodeInvalidCredential)
	}
	if err != nil {
		return nil, wrap("access", err)
	}
	kf.finish(&k)
	of.finish(&o)
	pf.finish(&p)
	for _, m := range granted {
		a.Grants[m] = true
	}
	if a.Concurrency == nil {
		a.Concurrency = map[string]int{}
	}
	return a, nil
}

// newID returns a random id with prefix, e.g. "key_…" (26 base32
// characters, 130 bits).
func newID(prefix string) string { return prefix + rand.Text() }
