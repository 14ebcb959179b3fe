package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/loadtest"
)

// ledgerWait is what a gateway's own metrics say about its ledger over a
// measurement: how many answered requests waited for their durable
// commit, how long in all, how many waited over 1 ms, and in how many
// group commits. The bench prints it beside each tollgate measurement, so
// that the share of the latency that is the ledger's is read off the same
// run.
type ledgerWait struct {
	waits, over1ms float64 // requests that waited; those whose wait was over 1 ms
	waitSum        float64 // seconds
	commits        float64 // group commits (the batch histogram's count)
}

// scrapeLedger reads base's /metrics.
func scrapeLedger(client *http.Client, base string) (ledgerWait, error) {
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		return ledgerWait{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ledgerWait{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseLedgerMetrics(resp.Body)
}

// parseLedgerMetrics reads the ledger's series from Prometheus's text
// format. A gateway that exposes none of them is an error: it is not one
// whose ledger can be reported.
func parseLedgerMetrics(r io.Reader) (ledgerWait, error) {
	var l ledgerWait
	var within1ms float64
	found := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "tollgate_ledger_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return ledgerWait{}, fmt.Errorf("metrics: %q: %w", line, err)
		}
		switch series := line[:i]; series {
		case "tollgate_ledger_wait_seconds_count":
			l.waits, found = v, found+1
		case "tollgate_ledger_wait_seconds_sum":
			l.waitSum, found = v, found+1
		case `tollgate_ledger_wait_seconds_bucket{le="0.001"}`:
			within1ms, found = v, found+1
		case "tollgate_ledger_commit_requests_count":
			l.commits, found = v, found+1
		}
	}
	if err := sc.Err(); err != nil {
		return ledgerWait{}, err
	}
	if found != 4 {
		return ledgerWait{}, fmt.Errorf("metrics: the ledger's wait and commit series are missing (found %d of 4)", found)
	}
	l.over1ms = l.waits - within1ms
	return l, nil
}

// since is what happened between before and l.
func (l ledgerWait) since(before ledgerWait) ledgerWait {
	return ledgerWait{waits: l.waits - before.waits, over1ms: l.over1ms - before.over1ms,
		waitSum: l.waitSum - before.waitSum, commits: l.commits - before.commits}
}

func (l ledgerWait) add(o ledgerWait) ledgerWait {
	return ledgerWait{waits: l.waits + o.waits, over1ms: l.over1ms + o.over1ms,
		waitSum: l.waitSum + o.waitSum, commits: l.commits + o.commits}
}

func (l ledgerWait) mean() time.Duration {
	if l.waits == 0 {
		return 0
	}
	return time.Duration(l.waitSum / l.waits * float64(time.Second))
}

func (l ledgerWait) shareOver1ms() float64 {
	if l.waits == 0 {
		return 0
	}
	return l.over1ms / l.waits
}

func (l ledgerWait) perCommit() float64 {
	if l.commits == 0 {
		return 0
	}
	return l.waits / l.commits
}

// String is the measurement's ledger on one line.
func (l ledgerWait) String() string {
	return fmt.Sprintf("ledger wait mean %s, over 1 ms %.1f%%, %.1f requests/commit",
		loadtest.FormatDuration(l.mean()), 100*l.shareOver1ms(), l.perCommit())
}
