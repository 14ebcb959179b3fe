package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func testCreateKey(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	k := newKey("acme", "ci")
	k.ExpiresAt = t0.Add(30 * 24 * time.Hour)
	createKey(t, s, k)
	diff(t, "Key", getKey(t, s, k.ID), k)
	got, err := s.KeyByHash(ctx, k.Hash)
	must(t, err)
	diff(t, "KeyByHash", got, k)

	// Zero settings round-trip as zero.
	bare := &tollgate.Key{ID: "key_bare", OrgID: "acme", Name: "bare", Hash: randomHash(), CreatedAt: t0}
	createKey(t, s, bare)
	diff(t, "Key(bare)", getKey(t, s, bare.ID), bare)

	_, err = s.Key(ctx, "key_nope")
	wantCode(t, "Key(unknown)", err, tollgate.CodeNotFound)
	_, err = s.KeyByHash(ctx, randomHash())
	wantCode(t, "KeyByHash(unknown)", err, tollgate.CodeNotFound)

	wantCode(t, "CreateKey(unknown org)", s.CreateKey(ctx, newKey("nope", "ci")), tollgate.CodeNotFound)

	dupID := newKey("acme", "other")
	dupID.ID = k.ID
	wantCode(t, "CreateKey(duplicate ID)", s.CreateKey(ctx, dupID), tollgate.CodeConflict)
	dupHash := newKey("acme", "other")
	dupHash.Hash = k.Hash
	wantCode(t, "CreateKey(duplicate hash)", s.CreateKey(ctx, dupHash), tollgate.CodeConflict)

	// An empty ID and a zero CreatedAt are filled in on the value passed.
	auto := newKey("acme", "auto")
	auto.ID, auto.CreatedAt = "", time.Time{}
	createKey(t, s, auto)
	if auto.ID == "" || auto.CreatedAt.IsZero() {
		t.Fatalf("CreateKey left ID %q, CreatedAt %v", auto.ID, auto.CreatedAt)
	}
	diff(t, "Key(auto)", getKey(t, s, auto.ID), auto)
	auto2 := newKey("acme", "auto2")
	auto2.ID = ""
	createKey(t, s, auto2)
	if auto2.ID == auto.ID {
		t.Errorf("two keys got the same ID %q", auto.ID)
	}

	keys, err := s.Keys(ctx, "globex")
	must(t, err)
	diff(t, "Keys(globex)", keys, []*tollgate.Key(nil))
	_, err = s.Keys(ctx, "nope")
	wantCode(t, "Keys(unknown org)", err, tollgate.CodeNotFound)
}

func testKeysOldestFirst(t *testing.T, s tollgate.Store) {
	seed(t, s)
	k2 := newKey("acme", "second")
	k2.CreatedAt = t0.Add(2 * time.Hour)
	k1 := newKey("acme", "first")
	k1.CreatedAt = t0.Add(time.Hour)
	k3 := newKey("acme", "third")
	k3.CreatedAt = t0.Add(2*time.Hour + 1) // one nanosecond after k2
	k0 := newKey("acme", "zeroth")
	k0.CreatedAt = t0.Add(-time.Hour)
	for _, k := range []*tollgate.Key{k2, k1, k3, k0} {
		createKey(t, s, k)
	}
	createKey(t, s, newKey("globex", "first"))
	keys, err := s.Keys(t.Context(), "acme")
	must(t, err)
	diff(t, "Keys(acme)", keys, []*tollgate.Key{k0, k1, k2, k3})
}

func testKeyNames(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	first := createKey(t, s, newKey("acme", "ci"))
	wantCode(t, "CreateKey(duplicate active name)", s.CreateKey(ctx, newKey("acme", "ci")), tollgate.CodeConflict)
	createKey(t, s, newKey("globex", "ci")) // names are per org

	// Revocation frees the name.
	must(t, s.RevokeKey(ctx, first.ID, t0))
	second := createKey(t, s, newKey("acme", "ci"))
	wantCode(t, "CreateKey(name of active key)", s.CreateKey(ctx, newKey("acme", "ci")), tollgate.CodeConflict)

	// Rotation frees the old key's name for its successor.
	next := newKey("acme", "ci")
	must(t, s.RotateKey(ctx, second.ID, next, t0.Add(time.Hour)))
	wantCode(t, "CreateKey(name of rotated-in key)", s.CreateKey(ctx, newKey("acme", "ci")), tollgate.CodeConflict)
	must(t, s.RevokeKey(ctx, next.ID, t0))
	createKey(t, s, newKey("acme", "ci"))

	keys, err := s.Keys(ctx, "acme")
	must(t, err)
	if len(keys) != 4 {
		t.Errorf("Keys(acme): %d keys, want 4", len(keys))
	}
}

func testRevokeKey(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	k := createKey(t, s, newKey("acme", "ci"))
	t1 := t0.Add(time.Hour + 7)
	must(t, s.RevokeKey(ctx, k.ID, t1))
	want := clone(k)
	want.RevokedAt = t1
	diff(t, "Key after revoke", getKey(t, s, k.ID), want)

	must(t, s.RevokeKey(ctx, k.ID, t1.Add(time.Hour))) // idempotent
	must(t, s.RevokeKey(ctx, k.ID, t0))                // even earlier: first time wins
	diff(t, "Key after second revoke", getKey(t, s, k.ID), want)

	got := getKey(t, s, k.ID)
	if !got.Active(t1.Add(-1)) || got.Active(t1) {
		t.Errorf("revoked at %v: Active just before = %v, at = %v", t1, got.Active(t1.Add(-1)), got.Active(t1))
	}
	wantCode(t, "RevokeKey(unknown)", s.RevokeKey(ctx, "key_nope", t1), tollgate.CodeNotFound)
}

func testRotateKey(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	tests := []struct {
		name         string
		expires      time.Time // the old key's own expiry
		oldExpiresAt time.Time // RotateKey's argument
		want         time.Time // the old key's expiry after
	}{
		{"no expiry", time.Time{}, t0.Add(24 * time.Hour), t0.Add(24 * time.Hour)},
		{"later expiry", t0.Add(48 * time.Hour), t0.Add(24 * time.Hour), t0.Add(24 * time.Hour)},
		{"earlier expiry kept", t0.Add(time.Hour), t0.Add(24 * time.Hour), t0.Add(time.Hour)},
		{"zero argument", t0.Add(time.Hour), time.Time{}, t0.Add(time.Hour)},
		{"zero both", time.Time{}, time.Time{}, time.Time{}},
	}
	for i, tt := range tests {
		old := newKey("acme", fmt.Sprintf("key-%d", i))
		old.ExpiresAt = tt.expires
		createKey(t, s, old)
		next := clone(old)
		next.ID, next.Hash, next.Prefix = "key_next"+fmt.Sprint(i), randomHash(), "tg_live_Zz9y"
		next.ExpiresAt, next.CreatedAt = time.Time{}, t0.Add(time.Minute)
		must(t, s.RotateKey(ctx, old.ID, next, tt.oldExpiresAt))

		// The old key keeps every setting but its expiry.
		want := clone(old)
		want.ExpiresAt = tt.want
		diff(t, tt.name+": old key", getKey(t, s, old.ID), want)
		diff(t, tt.name+": next key", getKey(t, s, next.ID), next)
		got, err := s.KeyByHash(ctx, old.Hash)
		must(t, err)
		diff(t, tt.name+": old key by hash", got, want)
	}

	// An empty next ID is filled in.
	old := createKey(t, s, newKey("acme", "auto"))
	next := newKey("acme", "auto")
	next.ID = ""
	must(t, s.RotateKey(ctx, old.ID, next, t0))
	if next.ID == "" {
		t.Fatal("RotateKey left next.ID empty")
	}
	diff(t, "auto next key", getKey(t, s, next.ID), next)
}

func testRotateKeyFailures(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	wantCode(t, "RotateKey(unknown)", s.RotateKey(ctx, "key_nope", newKey("acme", "x"), t0), tollgate.CodeNotFound)

	old := createKey(t, s, newKey("acme", "ci"))
	must(t, s.RotateKey(ctx, old.ID, newKey("acme", "ci"), t0.Add(time.Hour)))
	wantCode(t, "RotateKey(already rotated)", s.RotateKey(ctx, old.ID, newKey("acme", "ci-2"), t0), tollgate.CodeConflict)

	revoked := createKey(t, s, newKey("acme", "revoked"))
	must(t, s.RevokeKey(ctx, revoked.ID, t0))
	wantCode(t, "RotateKey(revoked)", s.RotateKey(ctx, revoked.ID, newKey("acme", "revoked"), t0), tollgate.CodeConflict)

	// next takes the name of another active key: conflict, and the old key
	// is untouched (one transaction).
	victim := createKey(t, s, newKey("acme", "victim"))
	createKey(t, s, newKey("acme", "taken"))
	wantCode(t, "RotateKey(next name taken)", s.RotateKey(ctx, victim.ID, newKey("acme", "taken"), t0), tollgate.CodeConflict)
	diff(t, "old key after failed rotation", getKey(t, s, victim.ID), victim)
	// Its name is still held.
	wantCode(t, "CreateKey(name of key after failed rotation)", s.CreateKey(ctx, newKey("acme", "victim")), tollgate.CodeConflict)
	// A rotation that succeeds afterwards still works.
	must(t, s.RotateKey(ctx, victim.ID, newKey("acme", "victim"), t0))
}

func testConcurrentCreateKey(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.CreateKey(ctx, newKey("acme", "shared"))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch tollgate.ErrorCode(err) {
		case "":
			ok++
		case tollgate.CodeConflict:
		default:
			t.Errorf("goroutine %d: %v (code %q), want nil or conflict", i, err, tollgate.ErrorCode(err))
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent CreateKey calls succeeded, want exactly 1", ok, n)
	}
	keys, err := s.Keys(ctx, "acme")
	must(t, err)
	if len(keys) != 1 {
		t.Errorf("Keys(acme): %d keys, want 1", len(keys))
	}
}
