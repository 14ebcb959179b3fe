package httpapi

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// TestAccessCacheDropsReadsBeforeClear: a key lookup that was in flight
// when the cache was cleared (a revocation on this replica or broadcast
// from another) is not cached: the next request reads the store again and
// sees the revocation, instead of trusting the stale answer for a TTL.
func TestAccessCacheDropsReadsBeforeClear(t *testing.T) {
	c := newAccessCache(time.Minute)
	now := time.Now()
	hash := string(make([]byte, tollgate.KeyHashSize))
	active := &tollgate.Access{Key: &tollgate.Key{ID: "key_1"}}

	gen := c.gen.Load() // the lookup starts
	c.clear()           // the key is revoked meanwhile
	c.put(hash, active, nil, now, gen)
	if a, err := c.get([]byte(hash), now); a != nil || err != nil {
		t.Errorf("a lookup begun before the clear was cached: %v, %v", a, err)
	}

	gen = c.gen.Load() // a lookup after the clear is kept
	c.put(hash, active, nil, now, gen)
	if a, _ := c.get([]byte(hash), now); a != active {
		t.Errorf("a lookup begun after the clear was not cached: %v", a)
	}
}
