package tollgate

import (
	"context"
	"time"
)

// Store holds orgs, plans, grants, concurrency overrides and keys. Methods
// return a catalog not_found or conflict error where the issue is the
// caller's; anything else is an internal error. Implementations: sqlite,
// postgres; both pass internal/storetest.
type Store interface {
	// CreateOrg stores org; conflict when its ID exists. Its plan must exist
	// (not_found otherwise).
	CreateOrg(ctx context.Context, org *Org) error
	Org(ctx context.Context, id string) (*Org, error)
	Orgs(ctx context.Context) ([]*Org, error)
	// SetOrgPlan moves an org to plan (both must exist).
	SetOrgPlan(ctx context.Context, orgID, planID string) error
	// SetOrgBilling replaces an org's billing settings.
	SetOrgBilling(ctx context.Context, orgID string, b Billing) error

	// PutPlan creates or replaces a plan.
	PutPlan(ctx context.Context, plan *Plan) error
	Plan(ctx context.Context, id string) (*Plan, error)
	Plans(ctx context.Context) ([]*Plan, error)

	// GrantModel enables model for the org (idempotent).
	GrantModel(ctx context.Context, orgID, model string) error
	// RevokeModel disables model for the org; not_found when not granted.
	RevokeModel(ctx context.Context, orgID, model string) error
	Grants(ctx context.Context, orgID string) ([]string, error)

	// SetConcurrency sets the org × model in-flight limit; limit < 0
	// removes the override (0 is a valid limit: nothing admitted).
	SetConcurrency(ctx context.Context, orgID, model string, limit int) error
	ConcurrencyOverrides(ctx context.Context, orgID string) (map[string]int, error)

	// CreateKey stores key; conflict when an active key of the org has
	// the same name, not_found when the org is unknown.
	CreateKey(ctx context.Context, key *Key) error
	Key(ctx context.Context, id string) (*Key, error)
	// KeyByHash finds a key by its HMAC hash, active or not.
	KeyByHash(ctx context.Context, hash []byte) (*Key, error)
	// Keys lists an org's keys, oldest first.
	Keys(ctx context.Context, orgID string) ([]*Key, error)
	// RevokeKey marks a key revoked at at (idempotent: the first time wins).
	RevokeKey(ctx context.Context, id string, at time.Time) error
	// RotateKey stores next and, in the same transaction, sets old's expiry
	// to oldExpiresAt (if earlier than its own) and frees its name.
	RotateKey(ctx context.Context, oldID string, next *Key, oldExpiresAt time.Time) error

	// ImportKeys stores keys in one transaction, all or none: conflict
	// when a hash or ID exists or repeats among them, or an active name of
	// an org is taken; not_found when an org is unknown. Like CreateKey it
	// fills in empty IDs and zero CreatedAt on the values passed.
	ImportKeys(ctx context.Context, keys []*Key) error
	// CountImportedKeys counts the keys active at now (neither revoked nor
	// expired by then) that have NoChecksum or a HashSHA256 hash.
	CountImportedKeys(ctx context.Context, now time.Time) (ImportedKeys, error)

	// Access resolves everything the request path needs for a key hash,
	// of any scheme (the caller checks Key.Scheme): invalid_credential
	// when unknown.
	Access(ctx context.Context, hash []byte) (*Access, error)

	Ledger

	// Ping reports whether the store answers a query (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}
