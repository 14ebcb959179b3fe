// Package postgres is tollgate's shared store: orgs, plans, grants,
// concurrency overrides, keys, the usage ledger and history in one
// PostgreSQL schema that any number of gateway replicas use at once,
// through pgx (pgxpool). It behaves like the sqlite store down to error
// codes and nanoseconds: both pass internal/storetest.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/tollgate/tollgate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a tollgate.Store on a PostgreSQL schema, through a pgxpool
// connection pool. It is safe for concurrent use, and replicas sharing the
// schema see each other's writes at once (nothing is cached). Each write is
// one statement or one transaction.
type Store struct {
	// Now stamps CreatedAt on orgs and keys created with a zero CreatedAt.
	// Zero value: time.Now. Set it before use.
	Now func() time.Time

	pool *pgxpool.Pool
}

// LedgerSync says when a ledger commit returns, for the start-up log: at
// PostgreSQL's commit, which is on the disk unless the server or the
// role sets synchronous_commit = off.
func (s *Store) LedgerSync() string {
	return "PostgreSQL commit, synced as the server's synchronous_commit says"
}

// Ping runs a query on a pooled connection.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

var _ tollgate.Store = (*Store)(nil)

// Open connects to the database dsn names (a postgres:// URL or
// "key=value" string, as pgx reads it: pool settings such as
// pool_max_conns and run-time parameters such as search_path included)
// and applies pending migrations to the first existing schema of its
// search_path. Replicas may Open at once: migrations run under an advisory
// lock of that schema, which Open waits for as long as ctx lets it.
//
// A Commit is durable when it returns as far as the server's
// synchronous_commit makes it (the default, on: flushed to its WAL).
func Open(ctx context.Context, dsn string) (*Store, error) {
	if dsn == "" {
		return nil, errors.New("postgres: open: a connection string is required")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := migrate(ctx, cfg.ConnConfig.Copy()); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return &Store{pool: pool}, nil
}

// migrate applies pending migrations through database/sql (goose's API),
// on a connection pool of its own that it closes.
//
// They run under a session-level advisory lock of the schema, taken on a
// connection of its own before goose starts: goose's own session lock
// comes after Up has looked for (and perhaps created) its version table,
// which replicas starting on an empty schema race for, retrying after a
// second's sleep; and lock.NewPostgresSessionLocker polls once a second at
// best where pg_advisory_lock waits in the server just as long as needed.
// The lock is the schema's rather than one for the whole database, so
// stores in other schemas (one per test, or per deployment) migrate
// without waiting for each other.
func migrate(ctx context.Context, cfg *pgx.ConnConfig) error {
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Close()
	var schema *string
	if err := conn.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if schema == nil {
		return errors.New("postgres: migrate: no schema of the search_path exists")
	}
	id := migrateLockID(*schema)
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, id); err != nil {
		return fmt.Errorf("postgres: migrate: lock schema %q: %w", *schema, err)
	}
	// Closing db would end the session and so release the lock too;
	// unlocking hands it on at once.
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, id)

	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// migrateLockID is the advisory lock id of schema's migrations.
func migrateLockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tollgate migrations\x00" + schema))
	return int64(h.Sum64())
}

// Close closes the connection pool, waiting for connections in use.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}

// execer is the pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SQLSTATEs the store turns into catalog errors.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// pgError returns err's PostgreSQL error, or nil.
func pgError(err error) *pgconn.PgError {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e
	}
	return nil
}

func isUnique(err error) bool {
	e := pgError(err)
	return e != nil && e.Code == uniqueViolation
}

func isForeignKey(err error) bool {
	e := pgError(err)
	return e != nil && e.Code == foreignKeyViolation
}

// wrap returns catalog errors unchanged and wraps anything else with op.
func wrap(op string, err error) error {
	var e *tollgate.Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// The range of times a unix-nanosecond int64 can hold (years 1678–2262).
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// encodeTime returns t as UTC unix nanoseconds, or nil (NULL) for the zero
// time.
func encodeTime(t time.Time) (*int64, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return nil, fmt.Errorf("time %v outside the storable range %v..%v", t, minTime.UTC(), maxTime.UTC())
	}
	n := t.UnixNano()
	return &n, nil
}

// nanos returns t as unix nanoseconds, clamped to the storable range: for
// query bounds, where a time outside it still means something (the zero
// time: before everything).
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func decodeTime(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

// stringList returns v, or an empty list (not NULL) for nil.
func stringList(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// floatMap returns v, or an empty map (JSON {} rather than null) for nil.
func floatMap(v map[string]float64) map[string]float64 {
	if v == nil {
		return map[string]float64{}
	}
	return v
}

// intMap returns v, or an empty map (JSON {} rather than null) for nil.
func intMap(v map[string]int) map[string]int {
	if v == nil {
		return map[string]int{}
	}
	return v
}

// emptyNil returns nil for an empty list, as sqlite decodes one.
func emptyNil[S ~[]E, E any](v S) S {
	if len(v) == 0 {
		return nil
	}
	return v
}

// emptyNilMap returns nil for an empty map, as sqlite decodes one.
func emptyNilMap[M ~map[K]V, K comparable, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return m
}
