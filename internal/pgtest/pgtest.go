// Package pgtest gives tests their own PostgreSQL schema in the database
// that TOLLGATE_TEST_POSTGRES names, so that tests (and replicas within a
// test) run in parallel without seeing each other's rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the environment variable holding the test database's connection
// string, e.g.
// postgres://postgres@127.0.0.1:5432/tollgate_test?sslmode=disable.
const Env = "TOLLGATE_TEST_POSTGRES"

// timeout bounds creating and dropping a schema.
const timeout = 30 * time.Second

// DSN creates an empty schema in the test database and returns a
// connection string whose search_path is that schema alone: every
// connection opened with it, by any number of stores, works in it. The
// schema is dropped, with everything in it, when t ends (after the
// cleanups registered later, such as closing a store opened with it).
// DSN skips t when Env is unset.
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(Env)
	if base == "" {
		t.Skip(Env + " not set: set it to a PostgreSQL connection string (e.g. " +
			"postgres://postgres@127.0.0.1:5432/tollgate_test?sslmode=disable) to run the PostgreSQL tests")
	}
	// Lowercase base32: a valid identifier that needs no quoting.
	schema := "t_" + strings.ToLower(rand.Text())
	if err := exec(base, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := exec(base, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("pgtest: drop schema: %v", err)
		}
	})
	dsn, err := WithSearchPath(base, schema)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", Env, err)
	}
	return dsn
}

// exec runs one statement on a connection of its own. It runs from
// Cleanup too, when t.Context is done: it has its own deadline.
func exec(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", Env, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// WithSearchPath returns dsn (a postgres:// URL or a "key=value" string)
// with its search_path run-time parameter set to schema.
func WithSearchPath(dsn, schema string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	// A later key overrides an earlier one.
	return strings.TrimSpace(dsn) + " search_path=" + schema, nil
}
