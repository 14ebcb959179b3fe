package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
)

// credential takes the key from X-API-Key (any case: Go canonicalizes
// header names) or Authorization: Bearer.
func credential(r *http.Request) (string, error) {
	if v := r.Header.Get("X-Api-Key"); v != "" {
		return strings.TrimSpace(v), nil
	}
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, token, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", tollgate.Errorf(tollgate.CodeInvalidCredential, "Authorization must be 'Bearer <key>'.")
		}
		return strings.TrimSpace(token), nil
	}
	return "", tollgate.NewError(tollgate.CodeMissingCredential)
}

// authenticate checks the key's format and checksum offline, then resolves
// it through the cache or the store, and refuses inactive keys.
//
// Imported keys (POST /admin/orgs/{id}/keys/import) add two lookups, each
// only while the deployment holds keys that need it (CountImportedKeys,
// read once per cache TTL), so a deployment without them keeps offline
// refusal and one HMAC lookup per key and TTL:
//   - a string that fails the offline check is looked up (if it could be a
//     key at all: plausibleKey) while keys without tollgate's checksum
//     exist, and accepted only as one of those;
//   - a string unknown by its HMAC is looked up by its plain SHA-256 while
//     keys imported as SHA-256 hashes exist.
//
// Either way the result is cached under the string's HMAC, and the stored
// hash is compared in constant time with the presented key's hash in the
// key's own scheme.
func (s *Server) authenticate(ctx context.Context, key string) (*tollgate.Access, error) {
	now := s.now()
	checked := s.Keys.Check(key) == nil
	if !checked {
		if !plausibleKey(key) {
			return nil, tollgate.NewError(tollgate.CodeInvalidCredential)
		}
		n, err := s.cache.importedKeys(ctx, s.Store, now)
		if err != nil {
			return nil, err
		}
		if n.NoChecksum == 0 {
			return nil, tollgate.NewError(tollgate.CodeInvalidCredential)
		}
	}
	var hash [tollgate.KeyHashSize]byte
	s.Hasher.HashTo(&hash, key)
	access, err := s.cache.get(hash[:], now)
	if err == nil && access == nil {
		gen := s.cache.gen.Load()
		access, err = s.resolve(ctx, key, hash[:], now)
		if err != nil && tollgate.ErrorCode(err) != tollgate.CodeInvalidCredential {
			return nil, err // store trouble is not cached
		}
		s.cache.put(string(hash[:]), access, err, now, gen)
	}
	if err != nil {
		return nil, err
	}
	k := access.Key
	if !s.hashMatches(k, key, hash[:]) || !k.Active(now) || (!checked && !k.NoChecksum) {
		return nil, tollgate.NewError(tollgate.CodeInvalidCredential)
	}
	return access, nil
}

// resolve finds key in the store: by its HMAC, then, while SHA-256
// imports exist, by its SHA-256.
func (s *Server) resolve(ctx context.Context, key string, hash []byte, now time.Time) (*tollgate.Access, error) {
	access, err := s.Store.Access(ctx, hash)
	if tollgate.ErrorCode(err) != tollgate.CodeInvalidCredential {
		return access, err
	}
	n, cerr := s.cache.importedKeys(ctx, s.Store, now)
	if cerr != nil {
		return nil, cerr
	}
	if n.SHA256 == 0 {
		return nil, err
	}
	return s.Store.Access(ctx, tollgate.SHA256Key(key))
}

// hashMatches compares k's stored hash with key's hash in k's scheme, in
// constant time; hmacHash is key's HMAC, already computed.
func (s *Server) hashMatches(k *tollgate.Key, key string, hmacHash []byte) bool {
	switch k.Scheme() {
	case tollgate.HashHMAC:
		return s.Hasher.Equal(k.Hash, hmacHash)
	case tollgate.HashSHA256:
		return subtle.ConstantTimeCompare(k.Hash, tollgate.SHA256Key(key)) == 1
	}
	return false
}

// The plaintext keys tollgate accepts for import, and so the strings worth
// a store lookup when they fail the offline check: printable ASCII without
// spaces (what a header carries once trimmed), MinImportedKeyLen to
// MaxImportedKeyLen bytes.
const (
	MinImportedKeyLen = 16
	MaxImportedKeyLen = 512
)

func plausibleKey(key string) bool {
	if len(key) < MinImportedKeyLen || len(key) > MaxImportedKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// accessCache holds resolved keys (and unknown ones) for a short TTL, so
// the store is read once per key per TTL, not once per request. It also
// holds the count of imported keys, for as long.
type accessCache struct {
	ttl    time.Duration
	shards [32]accessShard

	imported   atomic.Pointer[importedEntry]
	importedMu sync.Mutex // one store read at a time refreshes imported
	// gen is bumped by clear: a store read begun before a clear (an admin
	// change, a revocation broadcast) is not kept, or a key revoked while
	// its lookup was in flight would stay trusted for a whole TTL.
	gen atomic.Uint64
}

type importedEntry struct {
	n       tollgate.ImportedKeys
	expires time.Time
}

// importedKeys returns the count of active imported keys, read from store
// at most once per TTL (and again after clear).
func (c *accessCache) importedKeys(ctx context.Context, store tollgate.Store, now time.Time) (tollgate.ImportedKeys, error) {
	if e := c.imported.Load(); e != nil && now.Before(e.expires) {
		return e.n, nil
	}
	c.importedMu.Lock()
	defer c.importedMu.Unlock()
	if e := c.imported.Load(); e != nil && now.Before(e.expires) {
		return e.n, nil
	}
	gen := c.gen.Load()
	n, err := store.CountImportedKeys(ctx, now)
	if err != nil {
		return tollgate.ImportedKeys{}, err
	}
	if c.gen.Load() == gen {
		c.imported.Store(&importedEntry{n: n, expires: now.Add(c.ttl)})
	}
	return n, nil
}

type accessShard struct {
	mu sync.RWMutex
	m  map[string]accessEntry
}

type accessEntry struct {
	access  *tollgate.Access
	err     error
	expires time.Time
}

func newAccessCache(ttl time.Duration) *accessCache {
	c := &accessCache{ttl: ttl}
	for i := range c.shards {
		c.shards[i].m = make(map[string]accessEntry)
	}
	return c
}

func (c *accessCache) shard(hash0 byte) *accessShard {
	return &c.shards[hash0%byte(len(c.shards))]
}

// get returns the cached access or error; (nil, nil) on a miss.
func (c *accessCache) get(hash []byte, now time.Time) (*tollgate.Access, error) {
	sh := c.shard(hash[0])
	sh.mu.RLock()
	e, ok := sh.m[string(hash)]
	sh.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return nil, nil
	}
	return e.access, e.err
}

// put caches a store read that began at generation gen, unless the cache
// was cleared since (the read may predate the change that cleared it).
func (c *accessCache) put(hash string, a *tollgate.Access, err error, now time.Time, gen uint64) {
	sh := c.shard(hash[0])
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// clear bumps gen before it takes the shard locks: either this sees
	// the new gen, or clear removes the entry after it is stored.
	if c.gen.Load() != gen {
		return
	}
	if len(sh.m) > 10000 {
		for k, e := range sh.m {
			if !now.Before(e.expires) {
				delete(sh.m, k)
			}
		}
	}
	sh.m[hash] = accessEntry{access: a, err: err, expires: now.Add(c.ttl)}
}

// clear forgets every entry: admin changes (revoke, grants, plans) apply to
// the next request.
func (c *accessCache) clear() {
	c.gen.Add(1)
	c.imported.Store(nil)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// newID returns prefix + 20 random base36 characters from crypto/rand:
// for ids that must not be guessed (orgs, keys).
func newID(prefix string) string {
	var b [20]byte
	rand.Read(b[:])
	out := make([]byte, len(prefix)+len(b))
	copy(out, prefix)
	for i, c := range b {
		out[len(prefix)+i] = idAlphabet[int(c)%len(idAlphabet)]
	}
	return string(out)
}

// newRequestID returns "req_" + a sortable id (see sortableID): unique,
// cheap, not secret.
func newRequestID() string { return sortableID("req_") }

// sortableID returns prefix + 9 base36 characters of the Unix time in
// milliseconds + 13 random base36 characters (about 67 bits, from the
// runtime's per-thread generator). Ids made later sort later, so the
// ledger's and history's unique indexes take each new id at their right
// edge rather than on a random page (BenchmarkGroupCommit). Such ids are
// not secrets: history and usage are scoped by the caller's org, not by
// knowing an id.
func sortableID(prefix string) string {
	const timeDigits, randDigits = 9, 13
	out := make([]byte, len(prefix)+timeDigits+randDigits)
	n := copy(out, prefix)
	ms := uint64(time.Now().UnixMilli())
	for i := n + timeDigits - 1; i >= n; i-- {
		out[i] = idAlphabet[ms%36]
		ms /= 36
	}
	n += timeDigits
	a, b := mrand.Uint64(), mrand.Uint64()
	for i := 0; i < randDigits; i++ {
		if i == 7 {
			a = b
		}
		out[n+i] = idAlphabet[a%36]
		a /= 36
	}
	return string(out)
}
