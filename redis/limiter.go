// Package redis implements tollgate's limiter and quota on Redis, for a
// cluster of gateway replicas sharing one Redis: GCRA rate limits,
// concurrency leases and monthly quota counters. Each decision is one Lua
// script, atomic on the server and one round trip; Admit takes a rate
// token, a reservation and a lease in one script.
//
// The Limiter passes the same contract suites as inmem
// (internal/limitertest). What it adds for a cluster: the server's clock
// (Options.Clock), short timeouts and a circuit breaker so an unreachable
// Redis costs no request a wait (Options.Breaker*, Options.RateFailure,
// Ready), a local cache of known rate-limit denials, and a guard against
// quota counters lost with the server (ErrCountersLost).
//
// # Keys
//
// Every key starts with Options.Prefix ("tg:"):
//
//	<prefix>r:{<key>}     rate bucket (string: TAT in Unix ns)
//	<prefix>l:{<key>}     leases (sorted set: lease ID → expiry in Unix ms)
//	<prefix>q:{<org>}     an org's quota counters (hash; see script.go)
//	<prefix>quota:loaded  the marker Load sets (see ErrCountersLost)
//	<prefix>quota:loading the lock that keeps Loads one at a time
//
// The braces are Redis Cluster hash tags: each single-key script stays in
// one slot, and all of an org's counters are one key. A rate or lease key
// that holds a hash tag of its own ("rate:{org_1}:key_9") keeps it, so a
// caller can put a request's keys in its org's slot. New makes a client
// for one server (or a proxy in front of several); in a Redis Cluster the
// quota scripts would also need the marker per slot, and Admit all of a
// request's keys in one slot: neither is done here.
//
// Quota counters and the marker have no TTL, so a server whose
// maxmemory-policy is noeviction or volatile-* never evicts them; under
// allkeys-* it may evict one org's counters while the marker stays, and
// that org would count from zero. Rate buckets and lease sets expire by
// themselves.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/tollgate/tollgate"
)

// Clock says which clock rate and lease decisions use.
type Clock string

const (
	// ClockRedis decides by the server's TIME, the one clock every
	// replica shares: a replica whose clock is off neither steals nor
	// loses tokens, and never expires another's leases early. Durations in
	// the answers (RetryAfter, ExpiresAt - now) are the server's; the
	// instants are the caller's now plus them.
	ClockRedis Clock = "redis"
	// ClockCaller decides by the instant each call passes, as inmem does,
	// so that the contract suites can run without sleeping. Keys then live
	// a minute past the state they hold (a second with ClockRedis), since
	// the instants need not follow any clock.
	ClockCaller Clock = "caller"
)

// FailureMode says what a rate check does while Redis is unreachable.
type FailureMode string

const (
	// FailOpen decides rate limits in this process while Redis is
	// unreachable, with each limit (and burst) divided by
	// Options.Replicas, at least 1: the cluster as a whole stays close to
	// the limit. Its decisions report the divided limit.
	FailOpen FailureMode = "fail_open"
	// FailClosed refuses every rate-limited request with overloaded while
	// Redis is unreachable.
	FailClosed FailureMode = "fail_closed"
)

// The zero values of Options.
const (
	DefaultPrefix           = "tg:"
	DefaultLeaseTTL         = 15 * time.Second
	DefaultTimeout          = 100 * time.Millisecond
	DefaultDialTimeout      = time.Second
	DefaultMinIdleConns     = 8
	DefaultPoolTimeout      = time.Second
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = time.Second
	DefaultDenyCacheSize    = 4096
	DefaultRebuildGrace     = time.Hour
)

// Options configures a Limiter. Every zero value means the default named
// on the field.
type Options struct {
	// Prefix starts every key (zero: DefaultPrefix). It must not hold
	// '{' or '}'. Limiters with different prefixes share nothing.
	Prefix string
	// LeaseTTL is how long a lease lives without a heartbeat (zero:
	// DefaultLeaseTTL). Lease expiries are kept to the millisecond,
	// rounded up.
	LeaseTTL time.Duration
	// Clock is the clock of rate and lease decisions (zero: ClockRedis).
	// Quota months always follow the now each call passes.
	Clock Clock

	// Timeout bounds each read and write (zero: DefaultTimeout), and each
	// dial, with at least DefaultDialTimeout.
	// Calls are not retried: a failure counts towards the breaker.
	Timeout time.Duration
	// PoolTimeout bounds the wait for a free connection (zero:
	// DefaultPoolTimeout, or twice Timeout if longer). A wait that runs
	// out fails the call with overloaded but does not count towards the
	// breaker: it is this process that is saturated, not Redis.
	PoolTimeout time.Duration
	// PoolSize is the number of connections (zero: go-redis's default, 10
	// per GOMAXPROCS).
	PoolSize int
	// BreakerThreshold is the consecutive failures (timeouts, refused or
	// broken connections, a server still loading) that open the breaker
	// (zero: DefaultBreakerThreshold). While it is open no call goes to
	// Redis.
	BreakerThreshold int
	// BreakerCooldown is how long the breaker stays open before one call
	// probes Redis again (zero: DefaultBreakerCooldown). A probe that
	// succeeds closes it; one that fails opens it for another cooldown.
	BreakerCooldown time.Duration
	// RateFailure is what AllowRate (and Admit's rate step) does while
	// Redis is unreachable (zero: FailOpen). Reservations, settlements and
	// leases always fail closed, with overloaded.
	RateFailure FailureMode
	// Replicas is the number of gateway replicas sharing this Redis, by
	// which FailOpen divides limits (zero: 1).
	Replicas int

	// DenyCacheSize bounds the rate keys known to be over their limit,
	// refused in this process without a round trip until their
	// RetryAfter has passed (zero: DefaultDenyCacheSize; negative: no
	// cache).
	DenyCacheSize int
	// RebuildGrace is how long after a Load a Settle of a reservation that
	// the Load dropped adds its actual cost whole, rather than correcting
	// a reservation the loaded counters do not hold (zero:
	// DefaultRebuildGrace; negative: never). See Settle.
	RebuildGrace time.Duration
	// OnCountersLost, when set, is called each time a call finds the quota
	// counters lost (ErrCountersLost), from the calling goroutine; it
	// should start one rebuild (Load from the ledger) and return.
	OnCountersLost func()
}

// Errors a caller can recognise with errors.Is. Both arrive inside a
// *tollgate.Error with code overloaded and a RetryAfter, so a request that
// meets them is answered 503 and may be retried.
var (
	// ErrUnavailable: Redis did not answer (or the breaker is open).
	ErrUnavailable = errors.New("redis: unavailable")
	// ErrCountersLost: the quota counters are not loaded: Load never ran
	// on this Redis, or the server lost them (a restart without
	// persistence, FLUSHALL), or brought back older ones (a restart from
	// a snapshot or a failover to a replica: the marker Load sets names
	// the server run it was set on, and a new connection to another run
	// drops it). Counters are not read as zero or as an older copy: Reserve,
	// Admit's reservation step, Balance and Settle refuse until Load has
	// rebuilt them from the ledger. Loaded reports the state;
	// Options.OnCountersLost can start the rebuild.
	ErrCountersLost = errors.New("redis: quota counters lost; rebuild them from the ledger with Load")
)

// Limiter is a tollgate.Limiter, tollgate.Quota and tollgate.Admitter on
// Redis. It is safe for concurrent use. Build it with New; Close it when
// done.
type Limiter struct {
	client      *goredis.Client
	prefix      string
	ttl         time.Duration
	callerClock bool
	failOpen    bool
	replicas    int
	grace       time.Duration
	onLost      func()
	marker      string // the loaded marker's key
	loadLock    string // the Load lock's key

	idPrefix string // unique to this Limiter; lease IDs follow it
	lastID   atomic.Uint64

	br       breaker
	denied   denyCache
	fallback fallback
}

var (
	_ tollgate.Limiter  = (*Limiter)(nil)
	_ tollgate.Quota    = (*Limiter)(nil)
	_ tollgate.Admitter = (*Limiter)(nil)
)

// New connects to the Redis at url (redis:// or rediss://, with the
// user, password and database in it), pings it and loads the scripts.
// An unreachable server is an error: the gateway must load its quota
// counters before serving anyway.
func New(ctx context.Context, url string, opts Options) (*Limiter, error) {
	ro, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: parse url: %w", urlError(err))
	}
	l, err := newLimiter(ro, opts)
	if err != nil {
		return nil, err
	}
	if err := l.client.Ping(ctx).Err(); err != nil {
		l.client.Close()
		return nil, fmt.Errorf("redis: ping %s: %w", ro.Addr, err)
	}
	for _, s := range allScripts {
		if err := s.Load(ctx, l.client).Err(); err != nil {
			l.client.Close()
			return nil, fmt.Errorf("redis: load scripts: %w", err)
		}
	}
	return l, nil
}

// urlError drops the URL, which may hold a password, from a parse error.
func urlError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newLimiter builds a Limiter on ro without touching the network.
func newLimiter(ro *goredis.Options, opts Options) (*Limiter, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redis: prefix %q holds a brace", opts.Prefix)
	}
	switch opts.Clock {
	case "", ClockRedis, ClockCaller:
	default:
		return nil, fmt.Errorf("redis: unknown clock %q (want %q or %q)", opts.Clock, ClockRedis, ClockCaller)
	}
	switch opts.RateFailure {
	case "", FailOpen, FailClosed:
	default:
		return nil, fmt.Errorf("redis: unknown rate failure mode %q (want %q or %q)", opts.RateFailure, FailOpen, FailClosed)
	}
	if opts.LeaseTTL < 0 || opts.Timeout < 0 || opts.PoolTimeout < 0 || opts.PoolSize < 0 ||
		opts.BreakerThreshold < 0 || opts.BreakerCooldown < 0 || opts.Replicas < 0 {
		return nil, errors.New("redis: negative option")
	}
	timeout := or(opts.Timeout, DefaultTimeout)
	ro.ReadTimeout, ro.WriteTimeout = timeout, timeout
	// A burst of requests dials many connections at once, and on a busy
	// machine a dial can take longer than a command: a dial timeout as
	// short as the command timeout would open the breaker on a healthy
	// Redis. A refused connection fails at once either way; connections
	// kept warm (MinIdleConns) spare most requests the dial.
	ro.DialTimeout = max(timeout, DefaultDialTimeout)
	ro.MinIdleConns = DefaultMinIdleConns
	// A wait for a connection gets at least two command timeouts: a
	// shorter one would fail calls that a slow but working Redis is
	// still answering.
	ro.PoolTimeout = or(opts.PoolTimeout, max(DefaultPoolTimeout, 2*timeout))
	if opts.PoolSize > 0 {
		ro.PoolSize = opts.PoolSize
		ro.MinIdleConns = min(ro.MinIdleConns, opts.PoolSize)
	}
	ro.MaxRetries = -1   // the breaker decides, not a retry loop
	ro.DialerRetries = 1 // one attempt per dial
	ro.DisableIdentity = true
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	var id [6]byte
	rand.Read(id[:])
	grace := or(opts.RebuildGrace, DefaultRebuildGrace)
	if opts.RebuildGrace < 0 {
		grace = 0
	}
	l := &Limiter{
		prefix:      opts.Prefix,
		ttl:         or(opts.LeaseTTL, DefaultLeaseTTL),
		callerClock: opts.Clock == ClockCaller,
		failOpen:    opts.RateFailure != FailClosed,
		replicas:    max(opts.Replicas, 1),
		grace:       grace,
		onLost:      opts.OnCountersLost,
		marker:      opts.Prefix + "quota:loaded",
		loadLock:    opts.Prefix + "quota:loading",
		idPrefix:    hex.EncodeToString(id[:]) + ".",
		br: breaker{
			threshold: int32(or(opts.BreakerThreshold, DefaultBreakerThreshold)),
			cooldown:  or(opts.BreakerCooldown, DefaultBreakerCooldown),
		},
	}
	size := opts.DenyCacheSize
	if size == 0 {
		size = DefaultDenyCacheSize
	}
	l.denied.max = max(size, 0)
	ro.OnConnect = l.onConnect
	l.client = goredis.NewClient(ro)
	return l, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Close closes the connections.
func (l *Limiter) Close() error { return l.client.Close() }

// Ready reports whether Redis answers, for a readiness probe: nil, or an
// overloaded *tollgate.Error wrapping ErrUnavailable when the breaker is
// open or the ping fails. After the breaker's cooldown Ready's ping is the
// probe that can close it.
func (l *Limiter) Ready(ctx context.Context) error {
	return l.do(ctx, func(ctx context.Context) error {
		return l.client.Ping(ctx).Err()
	})
}

// Loaded reports whether the quota counters are loaded: false until Load
// has run on this Redis, and after the server lost them.
func (l *Limiter) Loaded(ctx context.Context) (bool, error) {
	var n int64
	err := l.do(ctx, func(ctx context.Context) error {
		var err error
		n, err = l.client.Exists(ctx, l.marker).Result()
		return err
	})
	return n == 1, err
}

// slotKey returns the key of kind for key: key in a hash tag, unless it
// holds one of its own.
func (l *Limiter) slotKey(kind, key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return l.prefix + kind + key
		}
	}
	return l.prefix + kind + "{" + key + "}"
}

func (l *Limiter) rateKey(key string) string  { return l.slotKey("r:", key) }
func (l *Limiter) leaseKey(key string) string { return l.slotKey("l:", key) }
func (l *Limiter) orgKey(org string) string   { return l.prefix + "q:{" + org + "}" }

// clock returns the clock arguments of a script: now in Unix seconds and
// nanoseconds, or "", "" for the server's TIME.
func (l *Limiter) clock(now time.Time) (string, string) {
	if !l.callerClock {
		return "", ""
	}
	return strconv.FormatInt(now.Unix(), 10), strconv.Itoa(now.Nanosecond())
}

// run runs script through do and returns its reply.
func (l *Limiter) run(ctx context.Context, s *goredis.Script, keys []string, args ...any) (any, error) {
	var v any
	err := l.do(ctx, func(ctx context.Context) error {
		var err error
		v, err = s.Run(ctx, l.client, keys, args...).Result()
		return err
	})
	return v, err
}

// do calls fn unless the breaker is open, and tells the breaker how it
// went. Redis unreachable (now or by the breaker) is an overloaded
// *tollgate.Error wrapping ErrUnavailable; an error Redis answered with is
// an internal error.
func (l *Limiter) do(ctx context.Context, fn func(context.Context) error) error {
	probe, wait, ok := l.br.allow()
	if !ok {
		return unavailable(wait, errors.New("circuit breaker open"))
	}
	err := fn(ctx)
	switch {
	case err == nil:
		l.br.success(probe)
		return nil
	case answered(err):
		l.br.success(probe)
		return fmt.Errorf("redis: %w", err)
	case ctx.Err() != nil:
		// The caller gave up: that says nothing of Redis.
		l.br.abandon(probe)
		return fmt.Errorf("redis: %w", err)
	case errors.Is(err, goredis.ErrPoolTimeout):
		// Every connection was busy for PoolTimeout: this process is
		// saturated (a burst, a starved CPU), which says nothing of
		// Redis either. The call fails with overloaded, not
		// ErrUnavailable: fail_open's local share is for Redis being
		// down, and the breaker stays as it is.
		l.br.abandon(probe)
		return &tollgate.Error{Code: tollgate.CodeOverloaded, RetryAfter: time.Second, Err: fmt.Errorf("redis: %w", err)}
	}
	l.br.failure(probe)
	return unavailable(l.br.cooldown, err)
}

// answered reports whether err is an answer from a working server: an
// error reply other than one saying the server cannot serve now.
func answered(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		return false
	}
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"} {
		if goredis.HasErrorPrefix(err, p) {
			return false
		}
	}
	return true
}

// unavailable returns the error of a call Redis could not serve.
func unavailable(retry time.Duration, cause error) error {
	return &tollgate.Error{
		Code:       tollgate.CodeOverloaded,
		RetryAfter: max(retry, time.Second),
		Err:        fmt.Errorf("%w: %w", ErrUnavailable, cause),
	}
}

// countersLost returns ErrCountersLost as a catalog error, after telling
// OnCountersLost.
func (l *Limiter) countersLost() error {
	if l.onLost != nil {
		l.onLost()
	}
	return &tollgate.Error{Code: tollgate.CodeOverloaded, RetryAfter: time.Second, Err: ErrCountersLost}
}

// reply is a script's array reply.
type reply []any

func asReply(v any) (reply, error) {
	r, ok := v.([]any)
	if !ok || len(r) == 0 {
		return nil, fmt.Errorf("redis: unexpected script reply %T %v", v, v)
	}
	return r, nil
}

func (r reply) str(i int) string {
	if i < len(r) {
		s, _ := r[i].(string)
		return s
	}
	return ""
}

func (r reply) int(i int) int64 {
	if i < len(r) {
		n, _ := r[i].(int64)
		return n
	}
	return 0
}

func (r reply) float(i int) float64 {
	f, _ := strconv.ParseFloat(r.str(i), 64)
	return f
}
