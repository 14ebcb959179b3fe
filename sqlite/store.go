// Package sqlite is tollgate's embedded store: orgs, plans, grants,
// concurrency overrides and keys in one SQLite file, through the pure-Go
// modernc.org/sqlite driver (no cgo).
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tollgate/tollgate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeout is how long a connection waits for another one's lock
// (another process on the same file, or a WAL checkpoint) before SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a tollgate.Store on one SQLite file. Writes go through a single
// connection (SQLite admits one writer at a time; queueing in database/sql
// instead of in SQLite's busy handler avoids SQLITE_BUSY), reads through a
// pool of read-only connections that WAL mode lets run beside the writer.
// It is safe for concurrent use.
type Store struct {
	// Now stamps CreatedAt on orgs and keys created with a zero CreatedAt.
	// Zero value: time.Now. Set it before use.
	Now func() time.Time

	write *sql.DB
	read  *sql.DB
	ckpt  *checkpointer

	closeOnce sync.Once // Close is idempotent
	closeErr  error
	access    *sql.Stmt // prepared on read: the request path's lookup
	// The ledger's inserts, prepared on write.
	insertEvents, insertItems *inserter
	// journal is the ledger's write-ahead log (journal.go); nil when
	// another process holds it, and the ledger is then written directly.
	journal *journal
}

// Option changes how Open opens a store.
type Option func(*options)

type options struct {
	backgroundSync bool
}

// WithBackgroundSync makes a ledger commit return once its record is
// written to the journal file, in the operating system's cache, instead
// of once it is on the disk; the journal is synced every
// BackgroundSyncEvery in the background. A crash of the gateway loses
// nothing (the file's pages outlive the process); a crash of the machine
// or a power loss can lose what was committed in the last
// BackgroundSyncEvery. Without a journal (Windows, or another process
// holds it) commits stay synced.
func WithBackgroundSync() Option { return func(o *options) { o.backgroundSync = true } }

var _ tollgate.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and applies
// pending migrations. path is a file name or a "file:" URI; in-memory
// databases are refused because the read and write pools would each get
// their own.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" || path == ":memory:" || strings.Contains(path, "mode=memory") {
		return nil, fmt.Errorf("sqlite: open %q: a database file is required", path)
	}
	base := path
	if !strings.HasPrefix(base, "file:") {
		base = "file:" + (&url.URL{Path: path}).EscapedPath()
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	common := fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1", busyTimeout.Milliseconds())

	s := &Store{}
	var err error
	// journal_mode is persistent in the file: set once by the writer, read
	// connections see it. synchronous=FULL keeps a commit durable on power
	// loss (the default for WAL is build-dependent, so it is explicit).
	// temp_store=memory keeps statement journals (multi-row inserts) off
	// the disk. wal_autocheckpoint=0: the checkpointer below copies the
	// WAL back in the background instead of the commit that crosses 1,000
	// pages.
	s.write, err = sql.Open("sqlite", base+sep+common+
		"&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate&_pragma=temp_store(memory)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)
	if err := s.migrate(ctx); err != nil {
		s.write.Close()
		return nil, err
	}

	if s.insertEvents, err = prepareInserter(ctx, s.write, "usage_events",
		"request_id, org_id, key_id, model, unit, quantity, credits, free_credits, time, period", "request_id"); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if s.insertItems, err = prepareInserter(ctx, s.write, "history",
		"id, org_id, key_id, request_id, model, feature, status, code, unit, quantity, credits, input, output, created_at", "id"); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	var jo journalOptions
	if o.backgroundSync {
		jo.syncEvery = BackgroundSyncEvery
	}
	if s.journal, err = s.openJournal(ctx, path, jo); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	s.read, err = sql.Open("sqlite", base+sep+common+"&_query_only=1")
	if err != nil {
		s.write.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.read.SetMaxOpenConns(n)
	s.read.SetMaxIdleConns(n)
	s.read.SetConnMaxLifetime(0)
	s.read.SetConnMaxIdleTime(0)
	if err := s.read.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if s.access, err = s.read.PrepareContext(ctx, accessQuery); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: prepare access: %w", err)
	}
	if s.ckpt, err = startCheckpointer(ctx, base+sep+common, checkpointInterval); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.write, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	// p.Close would close s.write: the provider is simply dropped.
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// openJournal opens the ledger journal beside the database file path (a
// file name or a "file:" URI) and replays what it holds.
func (s *Store) openJournal(ctx context.Context, path string, o journalOptions) (*journal, error) {
	name := path
	if strings.HasPrefix(path, "file:") {
		u, err := url.Parse(path)
		if err != nil {
			return nil, fmt.Errorf("journal: database path %q: %w", path, err)
		}
		if name = u.Path; name == "" {
			name = u.Opaque
		}
	}
	if name == "" {
		return nil, fmt.Errorf("journal: database path %q has no file name", path)
	}
	j, ok, err := openJournal(ctx, name, s.insertLedger, o)
	if !ok {
		return nil, err
	}
	return j, nil
}

// LedgerSync says when a ledger commit returns, for the start-up log:
// "journal, synced before each commit returns", "journal, synced in the
// background every 10ms", or, without a journal, "tables, synced before
// each commit returns".
func (s *Store) LedgerSync() string {
	switch {
	case s.journal == nil:
		return "tables, synced before each commit returns"
	case s.journal.syncEvery > 0:
		return fmt.Sprintf("journal, synced in the background every %v", s.journal.syncEvery)
	}
	return "journal, synced before each commit returns"
}

// LedgerBacklog is how many usage events and history items were committed
// to the ledger journal and are not in the tables yet (for the metrics);
// 0 without a journal.
func (s *Store) LedgerBacklog() int {
	if s.journal == nil {
		return 0
	}
	return s.journal.backlog()
}

// LedgerIngestion is what the journal's ingestion has done since the store
// opened (for the metrics): the rounds that succeeded, the rows they moved
// into the tables and the seconds they took, their rests included; zeros
// without a journal.
func (s *Store) LedgerIngestion() (rounds, rows uint64, seconds float64) {
	if s.journal == nil {
		return 0, 0, 0
	}
	j := s.journal
	return j.ingestRounds.Load(), j.ingestRows.Load(), time.Duration(j.ingestNanos.Load()).Seconds()
}

// Ping runs a query on a read connection, and fails once the ledger
// journal has failed to write to the disk.
func (s *Store) Ping(ctx context.Context) error {
	if s.journal != nil {
		if err := s.journal.err(); err != nil {
			return wrap("ping", err)
		}
	}
	var one int
	return wrap("ping", s.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one))
}

// Close closes both connection pools.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	var errs []error
	if s.journal != nil {
		errs = append(errs, s.journal.close())
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.close())
	}
	if s.access != nil {
		errs = append(errs, s.access.Close())
	}
	errs = append(errs, s.insertEvents.Close(), s.insertItems.Close())
	if s.read != nil {
		errs = append(errs, s.read.Close())
	}
	errs = append(errs, s.write.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE), committing when it
// returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// readTx runs fn in a read transaction: every query sees one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// errCode returns the extended SQLite result code of err, or 0.
func errCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func isUnique(err error) bool {
	c := errCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKey(err error) bool { return errCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY }

// catalogError reports whether err is already a catalog error, to be
// returned as is rather than wrapped.
func catalogError(err error) bool {
	var e *tollgate.Error
	return errors.As(err, &e)
}

// wrap returns catalog errors unchanged and wraps anything else with op.
func wrap(op string, err error) error {
	if err == nil || catalogError(err) {
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// The range of times a unix-nanosecond int64 can hold (years 1678–2262).
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// encodeTime returns t as UTC unix nanoseconds, or NULL for the zero time.
func encodeTime(t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return nil, fmt.Errorf("time %v outside the storable range %v..%v", t, minTime.UTC(), maxTime.UTC())
	}
	return t.UnixNano(), nil
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

func decodeTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

func encodeJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// decodeStrings decodes a JSON array; empty decodes to nil.
func decodeStrings(s string) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}

// decodeInts decodes a JSON object of ints; empty decodes to nil.
func decodeInts(s string) (map[string]int, error) {
	var v map[string]int
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}

// decodeFloats decodes a JSON object of numbers; empty decodes to nil.
func decodeFloats(s string) (map[string]float64, error) {
	var v map[string]float64
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}

// floatMap returns v, or an empty map (JSON {} rather than null) for nil.
func floatMap(v map[string]float64) map[string]float64 {
	if v == nil {
		return map[string]float64{}
	}
	return v
}

// stringList returns v, or an empty list (JSON [] rather than null) for nil.
func stringList(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// newID returns a random id with prefix, e.g. "key_…" (26 base32
// characters, 130 bits).
func newID(prefix string) string { return prefix + rand.Text() }
