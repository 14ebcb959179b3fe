package httpapi_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/httpapi"
	"github.com/tollgate/tollgate/inmem"
	"github.com/tollgate/tollgate/sqlite"
)

const (
	importAdmin  = "admin-token-0123456789"
	importSecret = "0123456789abcdef0123"
)

// countingStore counts the request path's store reads.
type countingStore struct {
	tollgate.Store
	access, counts atomic.Int64
}

func (c *countingStore) Access(ctx context.Context, hash []byte) (*tollgate.Access, error) {
	c.access.Add(1)
	return c.Store.Access(ctx, hash)
}

func (c *countingStore) CountImportedKeys(ctx context.Context, now time.Time) (tollgate.ImportedKeys, error) {
	c.counts.Add(1)
	return c.Store.CountImportedKeys(ctx, now)
}

// importServer is a deployment whose keys start origin_sk_ (seed 003's), on
// SQLite, with org "o" on a 100 rpm plan granted model "m".
type importServer struct {
	t     *testing.T
	store *countingStore
	h     http.Handler
	now   atomic.Int64 // offset from the real clock
}

func newImportServer(t *testing.T) *importServer {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	is := &importServer{t: t, store: &countingStore{Store: db}}
	s := &httpapi.Server{
		Store:   is.store,
		Limiter: inmem.NewLimiter(0),
		Forward: func(w http.ResponseWriter, r *http.Request, chain []*tollgate.Model, id string, hook httpapi.Hook) (httpapi.Upstream, error) {
			if err := hook(chain[0], 200, func(string) string { return "" }); err != nil {
				return httpapi.Upstream{}, err
			}
			w.WriteHeader(200)
			return httpapi.Upstream{Model: chain[0], Status: 200}, nil
		},
		Models:      []*tollgate.Model{{ID: "m", Method: "POST", Path: "/v1/m", Upstream: "http://127.0.0.1:1"}},
		Keys:        tollgate.KeyFormat{Prefix: "origin_sk_"},
		Hasher:      tollgate.NewKeyHasher([]byte(importSecret)),
		AdminToken:  importAdmin,
		KeyCacheTTL: time.Hour, // only admin changes clear it
		Now:         func() time.Time { return time.Now().Add(time.Duration(is.now.Load())) },
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	h, err := s.Handler()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	is.h = h
	if err := db.PutPlan(ctx, &tollgate.Plan{ID: "p", RPM: 100, Features: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateOrg(ctx, &tollgate.Org{ID: "o", Name: "O", PlanID: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := db.GrantModel(ctx, "o", "m"); err != nil {
		t.Fatal(err)
	}
	return is
}

func (is *importServer) admin(method, path string, body any) (int, map[string]any) {
	is.t.Helper()
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+importAdmin)
	w := httptest.NewRecorder()
	is.h.ServeHTTP(w, req)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		is.t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
	}
	return w.Code, out
}

func (is *importServer) importKeys(keys ...map[string]any) (int, map[string]any) {
	is.t.Helper()
	return is.admin("POST", "/admin/orgs/o/keys/import", map[string]any{"keys": keys})
}

// call sends a model request with key and returns the status and how many
// Access lookups it took.
func (is *importServer) call(key string) (status int, lookups int64) {
	is.t.Helper()
	before := is.store.access.Load()
	req := httptest.NewRequest("POST", "/v1/m", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+key)
	w := httptest.NewRecorder()
	is.h.ServeHTTP(w, req)
	return w.Code, is.store.access.Load() - before
}

func hmacHex(key string) string {
	m := hmac.New(sha256.New, []byte(importSecret))
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))
}

func sha256Hex(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

func TestImportedKeysAuthenticate(t *testing.T) {
	is := newImportServer(t)
	format := tollgate.KeyFormat{Prefix: "origin_sk_"}
	// Keys the old API issued: no tollgate checksum.
	plain := "origin_sk_live_4f9a8c7e2b1d4e6fa0b3c5d7e9f1a2b3"
	bySHA := "origin_sk_live_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	byHMAC := "origin_sk_live_ffeeddccbbaa99887766554433221100"
	// A key in tollgate's own format for this prefix, from an earlier
	// tollgate deployment with the same secret.
	own, _ := format.Generate(nil)

	status, out := is.importKeys(
		map[string]any{"name": "plain", "key": plain, "rpm": 10, "models": []string{"m"}, "scopes": []string{"inference"}},
		map[string]any{"name": "sha", "hash": sha256Hex(bySHA), "scheme": "sha256", "prefix": "origin_sk_live"},
		map[string]any{"name": "hmac", "hash": hmacHex(byHMAC), "scheme": "hmac-sha256", "created_at": "2024-01-02T03:04:05Z"},
		map[string]any{"name": "own", "key": own},
	)
	if status != 201 {
		t.Fatalf("import: %d %v", status, out)
	}
	type shown struct {
		Name, Prefix, HashScheme string
		Checksum                 bool
		RPM                      int
		CreatedAt                string
	}
	var got []shown
	for _, k := range out["keys"].([]any) {
		k := k.(map[string]any)
		if _, leaked := k["key"]; leaked {
			t.Errorf("import answered a key: %v", k)
		}
		got = append(got, shown{k["name"].(string), k["prefix"].(string), k["hash_scheme"].(string), k["checksum"].(bool),
			int(k["rpm"].(float64)), k["created_at"].(string)[:4]})
	}
	year := time.Now().UTC().Format("2006")
	want := []shown{
		{"plain", "origin_sk_live", "hmac-sha256", false, 10, year}, // the deployment prefix + 4, as its own keys
		{"sha", "origin_sk_live", "sha256", false, 0, year},
		{"hmac", "", "hmac-sha256", false, 0, "2024"},
		{"own", own[:len("origin_sk_")+4], "hmac-sha256", true, 0, year},
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("imported keys (-got +want):\n%s", d)
	}

	// Every one authenticates, each with its settings.
	for _, k := range []string{plain, bySHA, byHMAC, own} {
		if status, _ := is.call(k); status != 200 {
			t.Errorf("imported key %.20s…: %d, want 200", k, status)
		}
	}
	// A near miss of each is refused; a tollgate-format key with a bad
	// checksum is refused too (it is none of the imported keys).
	for _, k := range []string{plain[:len(plain)-1] + "4", bySHA + "x", strings.ToUpper(byHMAC), own[:len(own)-1] + "!"} {
		if status, _ := is.call(k); status != 401 {
			t.Errorf("near miss %.20s…: %d, want 401", k, status)
		}
	}

	// Revoking an imported key works at once; rotating one issues a
	// tollgate key (with a checksum) and keeps the old one for the overlap.
	keys := map[string]string{}
	_, list := is.admin("GET", "/admin/orgs/o/keys", nil)
	for _, k := range list["keys"].([]any) {
		k := k.(map[string]any)
		keys[k["name"].(string)] = k["id"].(string)
	}
	is.admin("POST", "/admin/keys/"+keys["sha"]+"/revoke", nil)
	if status, _ := is.call(bySHA); status != 401 {
		t.Errorf("revoked SHA-256 key: %d, want 401", status)
	}
	status, rot := is.admin("POST", "/admin/keys/"+keys["plain"]+"/rotate", map[string]any{"overlap": "1h"})
	if status != 201 {
		t.Fatalf("rotate: %d %v", status, rot)
	}
	next := rot["key"].(map[string]any)
	if err := format.Check(next["key"].(string)); err != nil || next["checksum"] != true || next["rpm"] != float64(10) {
		t.Errorf("rotated-in key %v: want a checksummed origin_sk_ key with the old settings", next)
	}
	if status, _ := is.call(next["key"].(string)); status != 200 {
		t.Errorf("rotated-in key: %d", status)
	}
	if status, _ := is.call(plain); status != 200 {
		t.Errorf("rotated-out key during the overlap: %d", status)
	}
	is.now.Add(int64(2 * time.Hour))
	if status, _ := is.call(plain); status != 401 {
		t.Errorf("rotated-out key after the overlap: %d, want 401", status)
	}
}

// TestImportedKeyLookups: the request path reads the store once per
// unknown key while no imported key needs more, and refuses malformed
// strings without a read; each kind of import adds exactly its lookup.
func TestImportedKeyLookups(t *testing.T) {
	is := newImportServer(t)
	format := tollgate.KeyFormat{Prefix: "origin_sk_"}
	fresh := func() string { k, _ := format.Generate(nil); return k }
	legacy := func() string { return "legacy_" + fresh()[10:] }

	expect := func(what, key string, wantStatus int, wantLookups int64) {
		t.Helper()
		status, n := is.call(key)
		if status != wantStatus || n != wantLookups {
			t.Errorf("%s: status %d after %d lookups, want %d after %d", what, status, n, wantStatus, wantLookups)
		}
	}
	_, k := is.admin("POST", "/admin/orgs/o/keys", map[string]any{"name": "issued"})
	issued := k["key"].(string)
	expect("issued key", issued, 200, 1)
	expect("issued key again (cached)", issued, 200, 0)
	expect("unknown well-formed key", fresh(), 401, 1)
	expect("malformed key", legacy(), 401, 0)
	expect("short string", "sk_x", 401, 0)
	counts := is.store.counts.Load()
	for range 5 {
		is.call(legacy())
		is.call(fresh())
	}
	if n := is.store.counts.Load() - counts; n != 0 {
		t.Errorf("the imported-key count was read %d more times within its TTL", n)
	}

	// Keys without a checksum: strings failing the offline check are looked
	// up (once: no SHA-256 import yet).
	old := legacy()
	if status, out := is.importKeys(map[string]any{"name": "legacy", "key": old}); status != 201 {
		t.Fatalf("import: %d %v", status, out)
	}
	expect("imported key without a checksum", old, 200, 1)
	expect("unknown malformed key", legacy(), 401, 1)
	expect("unknown well-formed key", fresh(), 401, 1)
	expect("short string", "sk_x", 401, 0)
	expect("string with a space", "legacy_0123456789 abcdef", 401, 0)

	// A SHA-256 import: an unknown key costs its second lookup.
	hashed := legacy()
	if status, out := is.importKeys(map[string]any{"name": "hashed", "hash": sha256Hex(hashed), "scheme": "sha256"}); status != 201 {
		t.Fatalf("import: %d %v", status, out)
	}
	expect("SHA-256 key", hashed, 200, 2)
	expect("SHA-256 key again (cached)", hashed, 200, 0)
	expect("unknown key", fresh(), 401, 2)

	// Once the imported keys are revoked, the extra lookups stop.
	_, list := is.admin("GET", "/admin/orgs/o/keys", nil)
	for _, k := range list["keys"].([]any) {
		if k := k.(map[string]any); k["name"] != "issued" {
			is.admin("POST", "/admin/keys/"+k["id"].(string)+"/revoke", nil)
		}
	}
	expect("revoked imported key", old, 401, 0)
	expect("unknown well-formed key", fresh(), 401, 1)
	expect("malformed key", legacy(), 401, 0)
}

func TestImportKeysRefusals(t *testing.T) {
	is := newImportServer(t)
	good := map[string]any{"name": "ok", "key": "legacy_0123456789abcdef"}
	tests := []struct {
		name   string
		keys   []map[string]any
		status int
		fields []string // details.errors[].field, in order
	}{
		{"no keys", nil, 422, []string{"keys"}},
		{"key and hash", []map[string]any{{"name": "a", "key": "legacy_0123456789abcdef", "hash": sha256Hex("x"), "scheme": "sha256"}}, 422, []string{"keys[0].key"}},
		{"neither", []map[string]any{{"name": "a"}}, 422, []string{"keys[0].key"}},
		{"short key", []map[string]any{good, {"name": "b", "key": "short"}}, 422, []string{"keys[1].key"}},
		{"key with a space", []map[string]any{{"name": "b", "key": "legacy 0123456789abcdef"}}, 422, []string{"keys[0].key"}},
		{"scheme with a key", []map[string]any{{"name": "b", "key": "legacy_0123456789abcdef", "scheme": "sha256"}}, 422, []string{"keys[0].scheme"}},
		{"bad hash", []map[string]any{{"name": "b", "hash": "abcd", "scheme": "sha256"}}, 422, []string{"keys[0].hash"}},
		{"bad scheme", []map[string]any{{"name": "b", "hash": sha256Hex("x"), "scheme": "md5"}}, 422, []string{"keys[0].scheme"}},
		{"no scheme", []map[string]any{{"name": "b", "hash": sha256Hex("x")}}, 422, []string{"keys[0].scheme"}},
		{"settings", []map[string]any{{"name": "", "key": "legacy_0123456789abcdef", "rpm": 101, "models": []string{"nope"}, "expires_in": "-1h", "created_at": "2999-01-01T00:00:00Z"}}, 422,
			[]string{"keys[0].name", "keys[0].models", "keys[0].rpm", "keys[0].expires_in", "keys[0].created_at"}},
		{"unknown field", []map[string]any{{"name": "b", "key": "legacy_0123456789abcdef", "secret": "x"}}, 422, nil},
		{"duplicate in the batch", []map[string]any{good, {"name": "dup", "key": "legacy_0123456789abcdef"}}, 409, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := is.importKeys(tt.keys...)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %v", status, tt.status, out)
			}
			if tt.fields != nil {
				var got []string
				for _, e := range out["details"].(map[string]any)["errors"].([]any) {
					got = append(got, e.(map[string]any)["field"].(string))
				}
				if d := cmp.Diff(got, tt.fields); d != "" {
					t.Errorf("fields (-got +want):\n%s", d)
				}
			}
		})
	}
	// Nothing of the refused batches was stored; then the good key imports,
	// and importing it again is a conflict.
	if _, list := is.admin("GET", "/admin/orgs/o/keys", nil); len(list["keys"].([]any)) != 0 {
		t.Errorf("refused imports stored keys: %v", list)
	}
	if status, out := is.importKeys(good); status != 201 {
		t.Fatalf("good import: %d %v", status, out)
	}
	if status, _ := is.importKeys(map[string]any{"name": "again", "key": good["key"]}); status != 409 {
		t.Errorf("re-import: %d, want 409", status)
	}
	if status, _ := is.admin("POST", "/admin/orgs/nope/keys/import", map[string]any{"keys": []any{good}}); status != 404 {
		t.Errorf("unknown org: %d, want 404", status)
	}
	many := make([]map[string]any, httpapi.MaxKeyImport+1)
	for i := range many {
		many[i] = good
	}
	if status, _ := is.importKeys(many...); status != 422 {
		t.Errorf("%d keys: %d, want 422", len(many), status)
	}
}
