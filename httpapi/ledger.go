package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tollgate/tollgate"
)

// committer is the ledger's group commit: every request hands in its usage
// event and history item and waits; one goroutine commits whatever has
// queued in one transaction and wakes every waiter. While one commit is on
// disk the next batch gathers, so the fsync is shared by as many requests
// as arrive during it.
type committer struct {
	ledger   tollgate.Ledger
	in       chan *pendingCommit
	maxBatch int
	done     chan struct{}
	logger   func(msg string, args ...any)
	metrics  *ledgerMetrics
}

// ledgerMetrics describe the group commit, so that an operator can tell
// how much of a request's latency is the durable ledger: the wait each
// request pays before its answer is sent, what one commit costs, how many
// requests share it, and how many attempts fail.
type ledgerMetrics struct {
	wait     prometheus.Histogram
	commit   prometheus.Histogram
	batch    prometheus.Histogram
	failures prometheus.Counter
}

// newLedgerMetrics registers the group commit's metrics with reg, and the
// journal's when l has one.
func newLedgerMetrics(reg prometheus.Registerer, l tollgate.Ledger) *ledgerMetrics {
	latency := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}
	m := &ledgerMetrics{
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_ledger_wait_seconds",
			Help:    "Time a request waited for its usage event and history item to be durable in the ledger (the commit in progress before its own included), before its answer was sent.",
			Buckets: latency,
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_ledger_commit_seconds",
			Help:    "Duration of one attempt of one group commit (SQLite: the journal's write and fdatasync; PostgreSQL: the transaction).",
			Buckets: latency,
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_ledger_commit_requests",
			Help:    "Requests whose records one group commit carried.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 … 1,024, the largest batch
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_ledger_commit_failures_total",
			Help: "Group commit attempts that failed; each is tried up to 4 times, and its requests get the last attempt's error.",
		}),
	}
	reg.MustRegister(m.wait, m.commit, m.batch, m.failures)
	if j, ok := l.(ledgerJournal); ok {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "tollgate_ledger_journal_rows",
				Help: "Usage events and history items committed to the SQLite ledger journal and not yet moved into the tables; commits wait for the ingestion once 65,536 are pending.",
			}, func() float64 { return float64(j.LedgerBacklog()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "tollgate_ledger_ingest_rounds_total",
				Help: "Ingestion rounds that moved the SQLite ledger journal's rows into the tables.",
			}, func() float64 { rounds, _, _ := j.LedgerIngestion(); return float64(rounds) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "tollgate_ledger_ingest_rows_total",
				Help: "Usage events and history items the ingestion moved from the SQLite ledger journal into the tables.",
			}, func() float64 { _, rows, _ := j.LedgerIngestion(); return float64(rows) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "tollgate_ledger_ingest_seconds_total",
				Help: "Time the ingestion rounds took, including the rests between statements that keep them to half a core while they keep up.",
			}, func() float64 { _, _, sec := j.LedgerIngestion(); return sec }),
		)
	}
	return m
}

// ledgerJournal is a ledger with a journal in front of its tables (the
// SQLite store), whose ingestion the metrics show.
type ledgerJournal interface {
	LedgerBacklog() int
	LedgerIngestion() (rounds, rows uint64, seconds float64)
}

type pendingCommit struct {
	event *tollgate.UsageEvent
	item  *tollgate.HistoryItem
	// errc receives the commit's result; nil for fire-and-forget items.
	errc chan error
}

var errcPool = sync.Pool{New: func() any { return make(chan error, 1) }}

func newCommitter(l tollgate.Ledger, logger func(string, ...any), m *ledgerMetrics) *committer {
	c := &committer{ledger: l, in: make(chan *pendingCommit, 4096), maxBatch: 1024, done: make(chan struct{}), logger: logger, metrics: m}
	go c.run()
	return c
}

// commit appends ev and item durably and returns once they are committed.
// It waits whatever the request's context says: a request that was
// answered must be in the ledger.
func (c *committer) commit(ev *tollgate.UsageEvent, item *tollgate.HistoryItem) error {
	errc := errcPool.Get().(chan error)
	start := time.Now()
	c.in <- &pendingCommit{event: ev, item: item, errc: errc}
	err := <-errc
	c.metrics.wait.Observe(time.Since(start).Seconds())
	errcPool.Put(errc)
	return err
}

// close commits what is queued and stops. Call it after the HTTP server
// has shut down.
func (c *committer) close() {
	close(c.in)
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	batch := make([]*pendingCommit, 0, c.maxBatch)
	events := make([]tollgate.UsageEvent, 0, c.maxBatch)
	items := make([]tollgate.HistoryItem, 0, c.maxBatch)
	for first := range c.in {
		batch = append(batch[:0], first)
	gather:
		for len(batch) < c.maxBatch {
			select {
			case p, ok := <-c.in:
				if !ok {
					break gather
				}
				batch = append(batch, p)
			default:
				break gather
			}
		}
		events, items = events[:0], items[:0]
		for _, p := range batch {
			if p.event != nil {
				events = append(events, *p.event)
			}
			if p.item != nil {
				items = append(items, *p.item)
			}
		}
		c.metrics.batch.Observe(float64(len(batch)))
		err := c.commitWithRetry(events, items)
		for _, p := range batch {
			if p.errc != nil {
				p.errc <- err
			}
		}
	}
}

// commitWithRetry retries a failed commit briefly: a busy database should
// delay answers, not fail them.
func (c *committer) commitWithRetry(events []tollgate.UsageEvent, items []tollgate.HistoryItem) error {
	const attempts = 4 // 10, 40 and 160 ms apart
	var err error
	for attempt, wait := 0, 10*time.Millisecond; attempt < attempts; attempt, wait = attempt+1, wait*4 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err = c.ledger.Commit(ctx, events, items)
		c.metrics.commit.Observe(time.Since(start).Seconds())
		cancel()
		if err == nil {
			return nil
		}
		c.metrics.failures.Inc()
		c.logger("ledger commit failed", "events", len(events), "items", len(items), "attempt", attempt+1, "err", err)
		if attempt < attempts-1 { // no wait after the last
			time.Sleep(wait)
		}
	}
	return err
}
