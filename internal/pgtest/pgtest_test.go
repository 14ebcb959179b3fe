package pgtest

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithSearchPath(t *testing.T) {
	for _, dsn := range []string{
		"postgres://postgres@127.0.0.1:5432/tollgate_test?sslmode=disable",
		"postgresql://u:p@db/x?search_path=public&application_name=a",
		"postgres://postgres@127.0.0.1/tollgate_test",
		"host=127.0.0.1 user=postgres dbname=tollgate_test sslmode=disable",
		"host=db search_path=public ",
	} {
		got, err := WithSearchPath(dsn, "t_abc")
		if err != nil {
			t.Fatalf("WithSearchPath(%q): %v", dsn, err)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Fatalf("WithSearchPath(%q) = %q: %v", dsn, got, err)
		}
		if sp := cfg.RuntimeParams["search_path"]; sp != "t_abc" {
			t.Errorf("WithSearchPath(%q) = %q: search_path %q, want t_abc", dsn, got, sp)
		}
	}
}
