package httpapi

import (
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
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
func (s *Server) authenticate(ctx context.Context, key string) (*tollgate.Access, error) {
	if err := s.Keys.Check(key); err != nil {
		return nil, tollgate.NewError(tollgate.CodeInvalidCredential)
	}
	var hash [tollgate.KeyHashSize]byte
	s.Hasher.HashTo(&hash, key)
	now := s.now()
	access, err := s.cache.get(hash[:], now)
	if err == nil && access == nil {
		access, err = s.Store.Access(ctx, hash[:])
		if err != nil && tollgate.ErrorCode(err) != tollgate.CodeInvalidCredential {
			return nil, err // store trouble is not cached
		}
		s.cache.put(string(hash[:]), access, err, now)
	}
	if err != nil {
		return nil, err
	}
	if !s.Hasher.Equal(access.Key.Hash, hash[:]) || !access.Key.Active(now) {
		return nil, tollgate.NewError(tollgate.CodeInvalidCredential)
	}
	return access, nil
}

// accessCache holds resolved keys (and unknown ones) for a short TTL, so
// the store is read once per key per TTL, not once per request.
type accessCache struct {
	ttl    time.Duration
	shards [32]accessShard
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

func (c *accessCache) put(hash string, a *tollgate.Access, err error, now time.Time) {
	sh := c.shard(hash[0])
	sh.mu.Lock()
	defer sh.mu.Unlock()
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
