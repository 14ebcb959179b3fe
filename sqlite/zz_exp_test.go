package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func multiInsert(table string, n int) string {
	row := "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	return `INSERT INTO ` + table + ` (request_id, org_id, key_id, model, unit, quantity, credits, free_credits, time, period) VALUES ` +
		strings.Repeat(row+",", n-1) + row + ` ON CONFLICT (request_id) DO NOTHING`
}

func BenchmarkExp(b *testing.B) {
	for _, v := range []string{"A", "B", "C", "D", "C-cache", "C-seq"} {
		for _, n := range []int{256, 1024} {
			b.Run(fmt.Sprintf("%s/batch=%d", v, n), func(b *testing.B) {
				ctx := b.Context()
				dir := b.TempDir()
				s, err := Open(ctx, filepath.Join(dir, "x.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				s.write.Exec("PRAGMA wal_autocheckpoint=0")
				if v == "C-cache" {
					s.write.Exec("PRAGMA cache_size=-65536")
				}
				table := "usage_events"
				if v == "D" {
					table = "ev2"
					if _, err := s.write.Exec(`CREATE TABLE ev2 (
    request_id   TEXT    PRIMARY KEY,    org_id       TEXT    NOT NULL,    key_id       TEXT    NOT NULL DEFAULT '',
    model        TEXT    NOT NULL,    unit         TEXT    NOT NULL,    quantity     REAL    NOT NULL,
    credits      REAL    NOT NULL,    free_credits REAL    NOT NULL DEFAULT 0,    time         INTEGER NOT NULL,
    period       TEXT    NOT NULL) STRICT, WITHOUT ROWID; CREATE INDEX ev2_org_time ON ev2 (org_id, time);`); err != nil {
						b.Fatal(err)
					}
				}
				multi, err := s.write.Prepare(multiInsert(table, 64))
				if err != nil {
					b.Fatal(err)
				}
				single, err := s.write.Prepare(multiInsert(table, 1))
				if err != nil {
					b.Fatal(err)
				}
				now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
				events := make([]tollgate.UsageEvent, n)
				total, seq := 0, 0
				var frames int64
				cpu0 := cpuNow()
				for b.Loop() {
					for i := range events {
						id := "req_" + rand.Text()
						if v == "C-seq" {
							seq++
							id = fmt.Sprintf("req_%016d", seq)
						}
						now = now.Add(time.Millisecond)
						events[i] = tollgate.UsageEvent{RequestID: id, OrgID: fmt.Sprintf("org-%d", i%50), KeyID: "key_1",
							Model: "stt-fast", Unit: tollgate.UnitAudioSeconds, Quantity: 12.5, Credits: 0.25, Time: now}
					}
					switch v {
					case "A":
						err = s.Commit(ctx, events, nil)
					case "B":
						err = s.inTx(ctx, func(tx *sql.Tx) error {
							st := tx.StmtContext(ctx, single)
							c := context.WithoutCancel(ctx)
							for i := range events {
								e := &events[i]
								p, _, _ := tollgate.Period(e.Time)
								if _, err := st.ExecContext(c, e.RequestID, e.OrgID, e.KeyID, e.Model, string(e.Unit), e.Quantity, e.Credits, e.FreeCredits, e.Time.UnixNano(), p); err != nil {
									return err
								}
							}
							return nil
						})
					default:
						err = s.inTx(ctx, func(tx *sql.Tx) error {
							st := tx.StmtContext(ctx, multi)
							st1 := tx.StmtContext(ctx, single)
							c := context.WithoutCancel(ctx)
							args := make([]any, 0, 640)
							rest := events
							for len(rest) >= 64 {
								args = args[:0]
								for i := range rest[:64] {
									e := &rest[i]
									p, _, _ := tollgate.Period(e.Time)
									args = append(args, e.RequestID, e.OrgID, e.KeyID, e.Model, string(e.Unit), e.Quantity, e.Credits, e.FreeCredits, e.Time.UnixNano(), p)
								}
								if _, err := st.ExecContext(c, args...); err != nil {
									return err
								}
								rest = rest[64:]
							}
							for i := range rest {
								e := &rest[i]
								p, _, _ := tollgate.Period(e.Time)
								if _, err := st1.ExecContext(c, e.RequestID, e.OrgID, e.KeyID, e.Model, string(e.Unit), e.Quantity, e.Credits, e.FreeCredits, e.Time.UnixNano(), p); err != nil {
									return err
								}
							}
							return nil
						})
					}
					if err != nil {
						b.Fatal(err)
					}
					total += n
				}
				cpu := cpuNow() - cpu0
				if fi, err := os.Stat(filepath.Join(dir, "x.db-wal")); err == nil {
					frames = (fi.Size() - 32) / (4096 + 24)
				}
				b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/event")
				b.ReportMetric(float64(frames)/float64(b.N), "frames/commit")
			})
		}
	}
}
