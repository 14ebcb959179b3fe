package sqlite

import (
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pressly/goose/v3"

	"github.com/tollgate/tollgate"
)

func provider(t *testing.T, db *sql.DB) *goose.Provider {
	t.Helper()
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMigrateMetering upgrades a database holding plans and orgs from
// before metering: they get the zero settings (no billing, no limits).
// The migration also goes down and up again.
func TestMigrateMetering(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_foreign_keys=1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider(t, db).UpTo(ctx, 1); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 5).UTC()
	for _, q := range []string{
		`INSERT INTO plans (id, rpm, features) VALUES ('free', 10, '["stt"]')`,
		`INSERT INTO orgs (id, name, plan_id, created_at) VALUES ('acme', 'Acme', 'free', 1700000000000000005)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := s.Plan(ctx, "free")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(plan, &tollgate.Plan{ID: "free", RPM: 10, Features: []string{"stt"}}); d != "" {
		t.Errorf("Plan after migration (-got +want):\n%s", d)
	}
	org, err := s.Org(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(org, &tollgate.Org{ID: "acme", Name: "Acme", PlanID: "free", CreatedAt: created}); d != "" {
		t.Errorf("Org after migration (-got +want):\n%s", d)
	}

	p := provider(t, s.write)
	if _, err := p.DownTo(ctx, 1); err != nil {
		t.Fatalf("down: %v", err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateKeyImport upgrades a database holding keys from before key
// imports: they keep working as tollgate's own (HMAC, with a checksum).
// The migration also goes down and up again.
func TestMigrateKeyImport(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tollgate.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_foreign_keys=1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider(t, db).UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO plans (id, rpm) VALUES ('free', 10)`,
		`INSERT INTO orgs (id, name, plan_id, created_at) VALUES ('acme', 'Acme', 'free', 1700000000000000005)`,
		`INSERT INTO keys (id, org_id, name, prefix, hash, created_at) VALUES ('key_old', 'acme', 'ci', 'tg_live_Ab3x', x'0102', 1700000000000000005)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Key(ctx, "key_old")
	if err != nil {
		t.Fatal(err)
	}
	if k.HashScheme != "" || k.Scheme() != tollgate.HashHMAC || k.NoChecksum {
		t.Errorf("key after migration: scheme %q, no checksum %v; want tollgate's own", k.HashScheme, k.NoChecksum)
	}
	if n, err := s.CountImportedKeys(ctx, time.Now()); err != nil || n != (tollgate.ImportedKeys{}) {
		t.Errorf("CountImportedKeys after migration = %+v, %v; want none", n, err)
	}

	p := provider(t, s.write)
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatalf("down: %v", err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
