package storetest

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// importedKey returns a key as `tollgate key import` stores one from
// another API: its SHA-256, or an HMAC of a key without tollgate's
// checksum.
func importedKey(org, name string, scheme tollgate.HashScheme) *tollgate.Key {
	k := newKey(org, name)
	k.Prefix = "origin_sk_"
	k.HashScheme = scheme
	k.NoChecksum = true
	return k
}

func testImportKeys(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	sha := importedKey("acme", "legacy-sha", tollgate.HashSHA256)
	sha.ExpiresAt = t0.Add(90 * 24 * time.Hour)
	hmac := importedKey("acme", "legacy-hmac", "")
	checked := newKey("globex", "tollgate-format") // a plaintext import that carries the checksum
	auto := importedKey("acme", "auto", tollgate.HashSHA256)
	auto.ID, auto.CreatedAt = "", time.Time{}
	must(t, s.ImportKeys(ctx, []*tollgate.Key{sha, hmac, checked, auto}))
	if auto.ID == "" || auto.CreatedAt.IsZero() {
		t.Fatalf("ImportKeys left ID %q, CreatedAt %v", auto.ID, auto.CreatedAt)
	}
	// The scheme and the checksum flag round-trip through every read.
	for _, k := range []*tollgate.Key{sha, hmac, checked, auto} {
		diff(t, "Key("+k.Name+")", getKey(t, s, k.ID), k)
		got, err := s.KeyByHash(ctx, k.Hash)
		must(t, err)
		diff(t, "KeyByHash("+k.Name+")", got, k)
		a, err := s.Access(ctx, k.Hash)
		must(t, err)
		diff(t, "Access("+k.Name+").Key", a.Key, k)
	}
	if got := getKey(t, s, sha.ID).Scheme(); got != tollgate.HashSHA256 {
		t.Errorf("Scheme() = %q, want sha256", got)
	}
	if got := getKey(t, s, hmac.ID).Scheme(); got != tollgate.HashHMAC {
		t.Errorf("Scheme() of a zero HashScheme = %q, want hmac-sha256", got)
	}
	// HashHMAC spelled out is the zero value's scheme.
	spelled := newKey("acme", "spelled")
	spelled.HashScheme = tollgate.HashHMAC
	must(t, s.ImportKeys(ctx, []*tollgate.Key{spelled}))
	if got := getKey(t, s, spelled.ID).Scheme(); got != tollgate.HashHMAC {
		t.Errorf("Scheme() of an explicit hmac-sha256 = %q", got)
	}

	// All or none: each failure leaves the store as it was.
	before, err := s.Keys(ctx, "acme")
	must(t, err)
	fresh := func(name string) *tollgate.Key { return importedKey("acme", name, tollgate.HashSHA256) }
	dupHash := fresh("dup-hash")
	dupHash.Hash = sha.Hash
	twice := fresh("twice")
	twin := fresh("twin")
	twin.Hash = twice.Hash
	dupID := fresh("dup-id")
	dupID.ID = hmac.ID
	for _, tt := range []struct {
		name string
		keys []*tollgate.Key
		code tollgate.Code
	}{
		{"hash exists", []*tollgate.Key{fresh("a"), dupHash}, tollgate.CodeConflict},
		{"hash repeats in the batch", []*tollgate.Key{twice, twin}, tollgate.CodeConflict},
		{"ID exists", []*tollgate.Key{fresh("b"), dupID}, tollgate.CodeConflict},
		{"active name taken", []*tollgate.Key{fresh("c"), fresh("legacy-sha")}, tollgate.CodeConflict},
		{"name repeats in the batch", []*tollgate.Key{fresh("d"), fresh("d")}, tollgate.CodeConflict},
		{"unknown org", []*tollgate.Key{fresh("e"), importedKey("nope", "e", "")}, tollgate.CodeNotFound},
	} {
		wantCode(t, "ImportKeys("+tt.name+")", s.ImportKeys(ctx, tt.keys), tt.code)
		after, err := s.Keys(ctx, "acme")
		must(t, err)
		diff(t, "Keys(acme) after a failed import ("+tt.name+")", after, before)
	}
	must(t, s.ImportKeys(ctx, nil)) // nothing to do

	// A revoked imported key frees its name, as a created one does.
	must(t, s.RevokeKey(ctx, sha.ID, t0))
	must(t, s.ImportKeys(ctx, []*tollgate.Key{fresh("legacy-sha")}))
}

func testCountImportedKeys(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	count := func(what string, at time.Time, want tollgate.ImportedKeys) {
		t.Helper()
		got, err := s.CountImportedKeys(ctx, at)
		must(t, err)
		diff(t, "CountImportedKeys "+what, got, want)
	}
	count("empty", t0, tollgate.ImportedKeys{})
	createKey(t, s, newKey("acme", "issued")) // tollgate's own keys never count
	count("only issued keys", t0, tollgate.ImportedKeys{})

	sha := importedKey("acme", "sha", tollgate.HashSHA256)                  // both
	hmac := importedKey("acme", "hmac", "")                                 // no checksum
	shaChecked := importedKey("globex", "sha-checked", tollgate.HashSHA256) // SHA-256 with a checksum
	shaChecked.NoChecksum = false
	expiring := importedKey("globex", "expiring", "")
	expiring.ExpiresAt = t0.Add(time.Hour)
	revoking := importedKey("globex", "revoking", tollgate.HashSHA256)
	must(t, s.ImportKeys(ctx, []*tollgate.Key{sha, hmac, shaChecked, expiring, revoking}))
	count("all active", t0, tollgate.ImportedKeys{NoChecksum: 4, SHA256: 3})

	// Expired and revoked keys stop counting from their time on.
	must(t, s.RevokeKey(ctx, revoking.ID, t0.Add(30*time.Minute)))
	count("before the revocation", t0.Add(30*time.Minute-1), tollgate.ImportedKeys{NoChecksum: 4, SHA256: 3})
	count("at the revocation", t0.Add(30*time.Minute), tollgate.ImportedKeys{NoChecksum: 3, SHA256: 2})
	count("at the expiry", t0.Add(time.Hour), tollgate.ImportedKeys{NoChecksum: 2, SHA256: 2})

	// A rotated-out key counts until the overlap ends; its successor is
	// tollgate's own.
	next := newKey("acme", "sha")
	must(t, s.RotateKey(ctx, sha.ID, next, t0.Add(2*time.Hour)))
	count("during the overlap", t0.Add(time.Hour), tollgate.ImportedKeys{NoChecksum: 2, SHA256: 2})
	count("after the overlap", t0.Add(2*time.Hour), tollgate.ImportedKeys{NoChecksum: 1, SHA256: 1})
}
