package redis

import (
	"sync/atomic"
	"time"
)

// breaker is a circuit breaker in front of Redis. Closed, every call goes
// through; threshold consecutive failures open it. Open, no call goes
// through until cooldown has passed; then one call at a time is let
// through as a probe: success closes the breaker, failure opens it for
// another cooldown. A closed breaker costs two atomic loads per call.
type breaker struct {
	threshold int32
	cooldown  time.Duration

	failures  atomic.Int32
	openUntil atomic.Int64 // Unix ns; 0 while closed
	probing   atomic.Bool
}

// allow reports whether a call may go to Redis (ok), and whether it is the
// probe of an open breaker. When it may not, wait is how long the breaker
// stays open.
func (b *breaker) allow() (probe bool, wait time.Duration, ok bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return false, 0, true
	}
	now := time.Now().UnixNano()
	if now < until {
		return false, time.Duration(until - now), false
	}
	if b.probing.CompareAndSwap(false, true) {
		return true, 0, true
	}
	return false, b.cooldown, false
}

// success records a call Redis answered.
func (b *breaker) success(probe bool) {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
	}
	if probe {
		b.probing.Store(false)
	}
}

// failure records a call Redis did not answer.
func (b *breaker) failure(probe bool) {
	if n := b.failures.Add(1); probe || n >= b.threshold {
		b.openUntil.Store(time.Now().Add(b.cooldown).UnixNano())
	}
	if probe {
		b.probing.Store(false)
	}
}

// abandon records a call the caller gave up on: it says nothing of Redis.
func (b *breaker) abandon(probe bool) {
	if probe {
		b.probing.Store(false)
	}
}

// open reports whether the breaker is open.
func (b *breaker) open() bool { return b.openUntil.Load() != 0 }
