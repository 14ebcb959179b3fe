// Package storetest is the contract suite every tollgate.Store passes
// (litestream's RunWithReplicaClient pattern): the sqlite and postgres
// stores run the same subtests, so they behave alike down to error codes
// and nanoseconds.
package storetest

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate"
)

// Run runs the contract suite. open must return a fresh, empty store (with
// migrations applied) and close it when t ends (t.Cleanup); it is called
// once per subtest, from parallel subtests.
//
// The contract, beyond store.go's comments:
//   - times round-trip to the nanosecond (whatever their location: compare
//     with Equal), from 1678 to 2262; the zero time stays zero;
//   - empty and nil lists and maps are interchangeable;
//   - CreateOrg and CreateKey fill in a zero CreatedAt, and CreateKey and
//     RotateKey an empty ID, on the value passed in;
//   - a duplicate key hash or ID is a conflict, like an active name;
//   - RotateKey of a revoked or already rotated key is a conflict, and a
//     failed rotation changes nothing;
//   - Grants, ConcurrencyOverrides and Keys answer not_found for an unknown
//     org; Orgs and Plans list by ID;
//   - a key's HashScheme and NoChecksum round-trip (HashHMAC spelled out
//     reads back as the zero value); ImportKeys is all or none, with
//     CreateKey's conflicts, also between the keys of one batch;
//   - CountImportedKeys counts keys that are neither revoked nor expired at
//     its time (a rotated-out key until its overlap ends).
//
// The ledger's contract:
//   - Commit skips, without an error, an event whose request id is stored
//     or earlier in the batch, and a history item whose ID is: the first
//     one wins. It refuses the whole batch (an error, nothing written) when
//     an event lacks a request id, org or time, or an item an ID, org or
//     creation time, or when a quantity or credits is NaN or infinite;
//   - UsageTotals with the zero since sums every event; months are UTC;
//   - Usage groups by "day" (UTC date × unit, ordered by day then unit) or
//     "model" (model × unit, ordered by model then unit); any other
//     GroupBy, or a To before From, is a validation_error;
//   - History lists newest first (created_at, then ID, descending); a zero
//     Limit means 50, more than 1000 means 1000, a negative Limit or
//     Offset is a validation_error;
//   - an org without events or items (known or not) gets none, not
//     not_found; HistoryItem and DeleteHistory answer not_found alike for
//     a missing item and another org's;
//   - PruneHistory deletes the items created strictly before its time.
func Run(t *testing.T, open func(t *testing.T) tollgate.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tollgate.Store)
	}{
		{"Plans", testPlans},
		{"Orgs", testOrgs},
		{"SetOrgPlan", testSetOrgPlan},
		{"Grants", testGrants},
		{"Concurrency", testConcurrency},
		{"CreateKey", testCreateKey},
		{"KeysOldestFirst", testKeysOldestFirst},
		{"KeyNames", testKeyNames},
		{"RevokeKey", testRevokeKey},
		{"RotateKey", testRotateKey},
		{"RotateKeyFailures", testRotateKeyFailures},
		{"Access", testAccess},
		{"Times", testTimes},
		{"ConcurrentCreateKey", testConcurrentCreateKey},
		{"ImportKeys", testImportKeys},
		{"CountImportedKeys", testCountImportedKeys},
		{"OrgBilling", testOrgBilling},
		{"CommitIdempotent", testCommitIdempotent},
		{"CommitInvalid", testCommitInvalid},
		{"UsageTotals", testUsageTotals},
		{"UsageByDay", testUsageByDay},
		{"UsageByModel", testUsageByModel},
		{"UsageQueryErrors", testUsageQueryErrors},
		{"History", testHistory},
		{"HistoryLimits", testHistoryLimits},
		{"HistoryOtherOrg", testHistoryOtherOrg},
		{"PruneHistory", testPruneHistory},
		{"ConcurrentCommit", testConcurrentCommit},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// t0 has nanoseconds and a non-UTC zone, so a store that truncates or
// mangles zones fails.
var t0 = time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.FixedZone("CEST", 2*60*60))

// equate treats nil and empty lists and maps alike; times compare with
// Equal (cmp's default for types with an Equal method).
var equate = cmpopts.EquateEmpty()

func diff(t *testing.T, what string, got, want any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(got, want, append(opts, equate)...); d != "" {
		t.Errorf("%s mismatch (-got +want):\n%s", what, d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, what string, err error, want tollgate.Code) {
	t.Helper()
	if got := tollgate.ErrorCode(err); got != want {
		t.Errorf("%s: error code %q, want %q (err: %v)", what, got, want, err)
	}
}

// seed stores plans "free" (billing required, 500 free credits) and "pro"
// (monthly caps), and orgs "acme" (free) and "globex" (pro), neither with
// billing.
func seed(t *testing.T, s tollgate.Store) {
	t.Helper()
	ctx := t.Context()
	must(t, s.PutPlan(ctx, &tollgate.Plan{
		ID: "free", RPM: 1000, Concurrency: 2, Features: []string{"stt"},
		BillingRequired: true, FreeCredits: 500,
	}))
	must(t, s.PutPlan(ctx, &tollgate.Plan{
		ID: "pro", RPM: 1_000_000, Concurrency: 50,
		ModelConcurrency: map[string]int{"tts-large": 5},
		Features:         []string{"stt", "tts"},
		MonthlyCreditCap: 10_000,
		MonthlyLimits:    map[string]float64{"stt-fast": 360_000},
	}))
	must(t, s.CreateOrg(ctx, &tollgate.Org{ID: "acme", Name: "Acme", PlanID: "free", CreatedAt: t0}))
	must(t, s.CreateOrg(ctx, &tollgate.Org{ID: "globex", Name: "Globex", PlanID: "pro", CreatedAt: t0}))
}

// newKey returns a key of org with a random hash and fixed settings.
func newKey(org, name string) *tollgate.Key {
	return &tollgate.Key{
		ID:        "key_" + rand.Text(),
		OrgID:     org,
		Name:      name,
		Prefix:    "tg_live_Ab3x",
		Hash:      randomHash(),
		Models:    []string{"stt-fast", "tts-large"},
		RPM:       600,
		Scopes:    []string{"inference"},
		CreatedAt: t0,
	}
}

func randomHash() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func createKey(t *testing.T, s tollgate.Store, k *tollgate.Key) *tollgate.Key {
	t.Helper()
	must(t, s.CreateKey(t.Context(), k))
	return k
}

func getKey(t *testing.T, s tollgate.Store, id string) *tollgate.Key {
	t.Helper()
	k, err := s.Key(t.Context(), id)
	must(t, err)
	return k
}

func clone(k *tollgate.Key) *tollgate.Key {
	c := *k
	return &c
}

// testPing: an open store answers; a cancelled context is an error.
func testPing(t *testing.T, s tollgate.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping with a cancelled context: nil")
	}
}
