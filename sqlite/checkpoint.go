package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"
)

// checkpointInterval is how often the checkpointer copies the WAL back
// into the database file.
const checkpointInterval = 250 * time.Millisecond

// checkpointer copies committed pages from the WAL back into the database
// file, in the background, on a connection of its own. SQLite would
// otherwise run that checkpoint inside whichever commit crosses 1,000 WAL
// pages (wal_autocheckpoint), and the ledger's group commit, which every
// answered request waits on, would pay for it: a third of a commit's time
// at 64 events per commit. A PASSIVE checkpoint takes no writer lock, so
// it runs beside the writer and never blocks it; pages rewritten between
// two checkpoints (the ledger's last leaf pages, every commit) are copied
// once instead of once per commit. A checkpoint that fails leaves the
// pages in the WAL, where readers still find them; the next tick retries.
type checkpointer struct {
	db   *sql.DB
	stop chan struct{}
	done chan struct{}
	// backfilled is the WAL's size in frames and how many of them are in
	// the database file, as of the last checkpoint (tests read it).
	backfilled atomic.Pointer[[2]int64]
}

func startCheckpointer(ctx context.Context, dsn string, every time.Duration) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	c := &checkpointer{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run(every)
	return c, nil
}

func (c *checkpointer) run(every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.checkpoint()
		}
	}
}

// checkpoint runs one PASSIVE checkpoint.
func (c *checkpointer) checkpoint() {
	var busy, logFrames, copied int64
	if err := c.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &copied); err == nil {
		c.backfilled.Store(&[2]int64{logFrames, copied})
	}
}

// close stops the checkpointer. The last connection to close (the write
// pool's, in Store.Close) checkpoints whatever is left.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
