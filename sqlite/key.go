package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

func errKeyNotFound(id string) error {
	return tollgate.Errorf(tollgate.CodeNotFound, "Key %q not found.", id)
}

// CreateKey stores key; conflict when an active key of the org has the same
// name (or the ID or hash exists), not_found when the org is unknown. An
// empty ID is assigned ("key_" + 26 random characters) and a zero CreatedAt
// set to s.Now(), both on key too.
func (s *Store) CreateKey(ctx context.Context, key *tollgate.Key) error {
	return wrap("create key", insertKey(ctx, s, s.write, key))
}

// insertKey inserts key with q (the write pool or a write transaction).
func insertKey(ctx context.Context, s *Store, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, key *tollgate.Key) error {
	if key.ID == "" {
		key.ID = newID("key_")
	}
	if key.CreatedAt.IsZero() {
		key.CreatedAt = s.now()
	}
	if len(key.Hash) == 0 {
		return errors.New("key has no hash")
	}
	models, err := encodeJSON(stringList(key.Models))
	if err != nil {
		return err
	}
	scopes, err := encodeJSON(stringList(key.Scopes))
	if err != nil {
		return err
	}
	var times [3]any
	for i, t := range []time.Time{key.ExpiresAt, key.RevokedAt, key.CreatedAt} {
		if times[i], err = encodeTime(t); err != nil {
			return err
		}
	}
	scheme, err := encodeScheme(key.HashScheme)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, `
		INSERT INTO keys (id, org_id, name, prefix, hash, models, rpm, scopes, expires_at, revoked_at, created_at,
			hash_scheme, no_checksum)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		key.ID, key.OrgID, key.Name, key.Prefix, key.Hash, models, key.RPM, scopes,
		times[0], times[1], times[2], scheme, key.NoChecksum)
	switch {
	case isUnique(err):
		// The constraint is named in the message: "UNIQUE constraint
		// failed: keys.org_id, keys.name".
		if strings.Contains(err.Error(), "keys.name") {
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

func scanKey(row interface{ Scan(...any) error }) (*tollgate.Key, error) {
	var k tollgate.Key
	var models, scopes string
	var expires, revoked, created sql.NullInt64
	if err := row.Scan(&k.ID, &k.OrgID, &k.Name, &k.Prefix, &k.Hash, &models, &k.RPM, &scopes,
		&expires, &revoked, &created, &k.HashScheme, &k.NoChecksum); err != nil {
		return nil, err
	}
	return decodeKey(&k, models, scopes, expires, revoked, created)
}

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

func decodeKey(k *tollgate.Key, models, scopes string, expires, revoked, created sql.NullInt64) (*tollgate.Key, error) {
	var err error
	if k.Models, err = decodeStrings(models); err != nil {
		return nil, fmt.Errorf("key %q: models: %w", k.ID, err)
	}
	if k.Scopes, err = decodeStrings(scopes); err != nil {
		return nil, fmt.Errorf("key %q: scopes: %w", k.ID, err)
	}
	k.ExpiresAt = decodeTime(expires)
	k.RevokedAt = decodeTime(revoked)
	k.CreatedAt = decodeTime(created)
	return k, nil
}

// Key returns the key with id; not_found when there is none.
func (s *Store) Key(ctx context.Context, id string) (*tollgate.Key, error) {
	k, err := scanKey(s.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
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
	k, err := scanKey(s.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
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
	var out []*tollgate.Key
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, orgID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx,
			`SELECT `+keyColumns+` FROM keys WHERE org_id = ? ORDER BY created_at, rowid`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, err := scanKey(rows)
			if err != nil {
				return err
			}
			out = append(out, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list keys", err)
	}
	return out, nil
}

// RevokeKey marks the key revoked at at; revoking a revoked key keeps the
// first time. not_found when the key is unknown. A revoked key's name is
// free at once, whatever at is.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("sqlite: revoke key %q: zero revocation time", id)
	}
	revoked, err := encodeTime(at)
	if err != nil {
		return wrap("revoke key", err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM keys WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return errKeyNotFound(id)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, revoked, id)
		return err
	})
	return wrap("revoke key", err)
}

// RotateKey stores next and, in the same transaction, marks the old key
// replaced by it (freeing its name) and sets its expiry to oldExpiresAt when
// that is earlier than its own (a zero oldExpiresAt leaves it unchanged).
// The caller copies the settings onto next. not_found when the old key is
// unknown; conflict when it is revoked or already rotated, or when next
// conflicts as in CreateKey.
func (s *Store) RotateKey(ctx context.Context, oldID string, next *tollgate.Key, oldExpiresAt time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var expires, revoked sql.NullInt64
		var replacedBy sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT expires_at, revoked_at, replaced_by FROM keys WHERE id = ?`, oldID).
			Scan(&expires, &revoked, &replacedBy)
		if errors.Is(err, sql.ErrNoRows) {
			return errKeyNotFound(oldID)
		}
		if err != nil {
			return err
		}
		if revoked.Valid {
			return tollgate.Errorf(tollgate.CodeConflict, "Key %q is revoked.", oldID)
		}
		if replacedBy.Valid {
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
		if _, err := tx.ExecContext(ctx,
			`UPDATE keys SET replaced_by = ?, expires_at = ? WHERE id = ?`, next.ID, newExpires, oldID); err != nil {
			return err
		}
		return insertKey(ctx, s, tx, next)
	})
	return wrap("rotate key", err)
}

// ImportKeys stores keys in one transaction: all or none.
func (s *Store) ImportKeys(ctx context.Context, keys []*tollgate.Key) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if err := insertKey(ctx, s, tx, k); err != nil {
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
	err := s.read.QueryRowContext(ctx, `
		SELECT coalesce(sum(no_checksum), 0), coalesce(sum(hash_scheme = 'sha256'), 0)
		FROM keys
		WHERE (no_checksum = 1 OR hash_scheme <> '')
			AND (revoked_at IS NULL OR revoked_at > ?) AND (expires_at IS NULL OR expires_at > ?)`,
		at, at).Scan(&n.NoChecksum, &n.SHA256)
	if err != nil {
		return tollgate.ImportedKeys{}, wrap("count imported keys", err)
	}
	return n, nil
}

// accessQuery reads a key, its org and plan, and the org's grants and
// overrides as JSON, in one statement (one snapshot, one round trip).
const accessQuery = `
	SELECT k.id, k.org_id, k.name, k.prefix, k.hash, k.models, k.rpm, k.scopes,
		k.expires_at, k.revoked_at, k.created_at, k.hash_scheme, k.no_checksum,
		o.id, o.name, o.plan_id, o.created_at,
		o.billing_active, o.monthly_credit_limit, o.monthly_limits,
		p.id, p.rpm, p.concurrency, p.model_concurrency, p.features,
		p.billing_required, p.free_credits, p.monthly_credit_cap, p.monthly_limits,
		(SELECT json_group_array(g.model) FROM grants g WHERE g.org_id = o.id),
		(SELECT json_group_object(c.model, c.max_inflight) FROM concurrency_overrides c WHERE c.org_id = o.id)
	FROM keys k
	JOIN orgs o ON o.id = k.org_id
	JOIN plans p ON p.id = o.plan_id
	WHERE k.hash = ?`

// Access resolves a key hash to the key (active or not: the caller checks
// Key.Active), its org and plan, the org's grants and its concurrency
// overrides. invalid_credential when the hash is unknown.
func (s *Store) Access(ctx context.Context, hash []byte) (*tollgate.Access, error) {
	var (
		k                         tollgate.Key
		o                         tollgate.Org
		p                         tollgate.Plan
		models, scopes            string
		expires, revoked, created sql.NullInt64
		orgCreated                sql.NullInt64
		mc, features              string
		orgLimits, planLimits     string
		grants, overrides         string
	)
	err := s.access.QueryRowContext(ctx, hash).Scan(
		&k.ID, &k.OrgID, &k.Name, &k.Prefix, &k.Hash, &models, &k.RPM, &scopes,
		&expires, &revoked, &created, &k.HashScheme, &k.NoChecksum,
		&o.ID, &o.Name, &o.PlanID, &orgCreated,
		&o.Billing.Active, &o.Billing.MonthlyCreditLimit, &orgLimits,
		&p.ID, &p.RPM, &p.Concurrency, &mc, &features,
		&p.BillingRequired, &p.FreeCredits, &p.MonthlyCreditCap, &planLimits,
		&grants, &overrides)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, tollgate.NewError(tollgate.CodeInvalidCredential)
	}
	if err != nil {
		return nil, wrap("access", err)
	}
	if _, err := decodeKey(&k, models, scopes, expires, revoked, created); err != nil {
		return nil, wrap("access", err)
	}
	if _, err := decodeOrg(&o, orgCreated, orgLimits); err != nil {
		return nil, wrap("access", err)
	}
	if _, err := decodePlan(&p, mc, features, planLimits); err != nil {
		return nil, wrap("access", err)
	}
	a := &tollgate.Access{Key: &k, Org: &o, Plan: &p, Grants: map[string]bool{}}
	granted, err := decodeStrings(grants)
	if err != nil {
		return nil, wrap("access: grants", err)
	}
	for _, m := range granted {
		a.Grants[m] = true
	}
	if a.Concurrency, err = decodeInts(overrides); err != nil {
		return nil, wrap("access: concurrency overrides", err)
	}
	if a.Concurrency == nil {
		a.Concurrency = map[string]int{}
	}
	return a, nil
}
