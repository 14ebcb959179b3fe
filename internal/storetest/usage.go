package storetest

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tollgate/tollgate"
)

// Quantities and credits in the ledger tests are binary fractions, so sums
// are exact in any order.

func event(id, org, model string, unit tollgate.Unit, quantity, credits, free float64, at time.Time) tollgate.UsageEvent {
	return tollgate.UsageEvent{
		RequestID: id, OrgID: org, KeyID: "key_" + org, Model: model, Unit: unit,
		Quantity: quantity, Credits: credits, FreeCredits: free, Time: at,
	}
}

func totals(t *testing.T, s tollgate.Store, since time.Time) []tollgate.UsageTotal {
	t.Helper()
	got, err := s.UsageTotals(t.Context(), since)
	must(t, err)
	return got
}

// sortTotals orders totals by org, model and period: the suite does not
// require an order.
var sortTotals = cmpopts.SortSlices(func(a, b tollgate.UsageTotal) bool {
	if a.OrgID != b.OrgID {
		return a.OrgID < b.OrgID
	}
	if a.Model != b.Model {
		return a.Model < b.Model
	}
	return a.Period < b.Period
})

func usage(t *testing.T, s tollgate.Store, q tollgate.UsageQuery) []tollgate.UsageRow {
	t.Helper()
	got, err := s.Usage(t.Context(), q)
	must(t, err)
	return got
}

func testCommitIdempotent(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	must(t, s.Commit(ctx, nil, nil)) // nothing to do

	e1 := event("req_1", "acme", "stt-fast", tollgate.UnitAudioSeconds, 12.5, 0.25, 0.25, t0)
	e2 := event("req_2", "acme", "stt-fast", tollgate.UnitAudioSeconds, 2, 0.5, 0, t0.Add(time.Second))
	h1 := tollgate.HistoryItem{ID: "hist_1", OrgID: "acme", RequestID: "req_1", Model: "stt-fast",
		Feature: "stt", Status: 200, Unit: tollgate.UnitAudioSeconds, Quantity: 12.5, Credits: 0.25,
		Input: "audio/wav 12.5s", Output: "hello", CreatedAt: t0}
	must(t, s.Commit(ctx, []tollgate.UsageEvent{e1, e2}, []tollgate.HistoryItem{h1}))
	want := []tollgate.UsageTotal{{OrgID: "acme", Model: "stt-fast", Period: "2025-06", Units: 14.5, Credits: 0.75, FreeCredits: 0.25}}
	diff(t, "UsageTotals after the first commit", totals(t, s, time.Time{}), want)

	// A retried batch (the same events and item) changes nothing, and
	// neither does a later event reusing a request id with other figures:
	// the first one stays.
	must(t, s.Commit(ctx, []tollgate.UsageEvent{e1, e2}, []tollgate.HistoryItem{h1}))
	e1b := e1
	e1b.Quantity, e1b.Credits, e1b.Model = 1000, 1000, "tts-large"
	h1b := h1
	h1b.Output = "changed"
	must(t, s.Commit(ctx, []tollgate.UsageEvent{e1b}, []tollgate.HistoryItem{h1b}))
	diff(t, "UsageTotals after duplicates", totals(t, s, time.Time{}), want)
	got, err := s.HistoryItem(ctx, "acme", "hist_1")
	must(t, err)
	diff(t, "HistoryItem after a duplicate", got, &h1)

	// Twice in one batch, beside a new event: one of it, the first.
	e3 := event("req_3", "acme", "stt-fast", tollgate.UnitAudioSeconds, 1, 0.125, 0, t0.Add(2*time.Second))
	e3b := e3
	e3b.Quantity, e3b.Credits = 64, 64
	h2 := tollgate.HistoryItem{ID: "hist_2", OrgID: "acme", RequestID: "req_3", CreatedAt: t0.Add(2 * time.Second)}
	h2b := h2
	h2b.Output = "second"
	must(t, s.Commit(ctx, []tollgate.UsageEvent{e3, e1, e3b}, []tollgate.HistoryItem{h2, h2b}))
	want[0].Units, want[0].Credits = 15.5, 0.875
	diff(t, "UsageTotals after a batch with duplicates", totals(t, s, time.Time{}), want)
	diff(t, "Usage(requests)", usage(t, s, tollgate.UsageQuery{OrgID: "acme", GroupBy: "model"}), []tollgate.UsageRow{
		{Model: "stt-fast", Unit: tollgate.UnitAudioSeconds, Requests: 3, Quantity: 15.5, Credits: 0.875},
	})
	items, err := s.History(ctx, tollgate.HistoryFilter{OrgID: "acme"})
	must(t, err)
	diff(t, "History after duplicates", items, []tollgate.HistoryItem{h2, h1})

	// A large batch (a store may insert many rows per statement): 100
	// events and items, each id twice, the second copy with other figures,
	// plus stored ones.
	var big []tollgate.UsageEvent
	var bigItems []tollgate.HistoryItem
	for i := range 100 {
		k := i % 50
		e := event(fmt.Sprintf("req_big_%02d", k), "globex", "tts-large", tollgate.UnitCharacters, 1, 0.5, 0, t0)
		h := tollgate.HistoryItem{ID: fmt.Sprintf("hist_big_%02d", k), OrgID: "globex", Feature: "tts", CreatedAt: t0.Add(time.Duration(k))}
		if i >= 50 {
			e.Quantity, e.Credits = 1000, 1000
			h.Output = "second"
		}
		big, bigItems = append(big, e), append(bigItems, h)
		if i == 20 || i == 70 {
			big = append(big, e1, e2)
		}
	}
	must(t, s.Commit(ctx, big, bigItems))
	diff(t, "UsageTotals after a large batch with duplicates", totals(t, s, time.Time{}), []tollgate.UsageTotal{
		want[0],
		{OrgID: "globex", Model: "tts-large", Period: "2025-06", Units: 50, Credits: 25},
	}, sortTotals)
	items, err = s.History(ctx, tollgate.HistoryFilter{OrgID: "globex", Limit: 1000})
	must(t, err)
	if len(items) != 50 {
		t.Errorf("History(globex) after a large batch: %d items, want 50", len(items))
	}
	for _, h := range items {
		if h.Output != "" {
			t.Errorf("History(globex): %s has the second copy's output %q", h.ID, h.Output)
		}
	}
}

// testCommitInvalid: a batch holding an event or item the ledger must not
// store fails whole, writing nothing.
func testCommitInvalid(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	good := event("req_good", "acme", "stt-fast", tollgate.UnitRequests, 1, 1, 0, t0)
	item := tollgate.HistoryItem{ID: "hist_good", OrgID: "acme", CreatedAt: t0}
	for _, c := range []struct {
		name   string
		events []tollgate.UsageEvent
		items  []tollgate.HistoryItem
	}{
		{"no request id", []tollgate.UsageEvent{good, event("", "acme", "m", "requests", 1, 1, 0, t0)}, []tollgate.HistoryItem{item}},
		{"no org", []tollgate.UsageEvent{good, event("req_x", "", "m", "requests", 1, 1, 0, t0)}, []tollgate.HistoryItem{item}},
		{"no time", []tollgate.UsageEvent{good, event("req_x", "acme", "m", "requests", 1, 1, 0, time.Time{})}, []tollgate.HistoryItem{item}},
		{"item without id", []tollgate.UsageEvent{good}, []tollgate.HistoryItem{item, {OrgID: "acme", CreatedAt: t0}}},
		{"item without org", []tollgate.UsageEvent{good}, []tollgate.HistoryItem{item, {ID: "hist_x", CreatedAt: t0}}},
		{"item without time", []tollgate.UsageEvent{good}, []tollgate.HistoryItem{item, {ID: "hist_x", OrgID: "acme"}}},
		// NaN or an infinity would poison every sum it joins.
		{"NaN credits", []tollgate.UsageEvent{good, event("req_x", "acme", "m", "requests", 1, math.NaN(), 0, t0)}, nil},
		{"infinite quantity", []tollgate.UsageEvent{event("req_x", "acme", "m", "requests", math.Inf(1), 1, 0, t0), good}, nil},
		{"NaN free credits", []tollgate.UsageEvent{good, event("req_x", "acme", "m", "requests", 1, 1, math.NaN(), t0)}, nil},
		{"item with NaN credits", nil, []tollgate.HistoryItem{item, {ID: "hist_x", OrgID: "acme", Credits: math.NaN(), CreatedAt: t0}}},
	} {
		if err := s.Commit(ctx, c.events, c.items); err == nil {
			t.Errorf("Commit(%s) succeeded, want an error", c.name)
		}
	}
	diff(t, "UsageTotals after failed commits", totals(t, s, time.Time{}), []tollgate.UsageTotal(nil))
	_, err := s.HistoryItem(ctx, "acme", "hist_good")
	wantCode(t, "HistoryItem after failed commits", err, tollgate.CodeNotFound)
}

func testUsageTotals(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	lastNano := time.Date(2025, 5, 31, 23, 59, 59, 999_999_999, time.UTC)
	lastMilli := time.Date(2025, 5, 31, 23, 59, 59, 999_000_000, time.UTC)
	june := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	// 01:30 on 1 June in Paris is still May in UTC.
	parisJune := time.Date(2025, 6, 1, 1, 30, 0, 0, time.FixedZone("CEST", 2*60*60))
	stt, tts := tollgate.UnitAudioSeconds, tollgate.UnitCharacters
	events := []tollgate.UsageEvent{
		event("r01", "acme", "stt-fast", stt, 60, 1, 1, lastMilli),
		event("r02", "acme", "stt-fast", stt, 30, 0.5, 0.5, lastNano),
		event("r03", "acme", "stt-fast", stt, 120, 2, 1.5, parisJune),
		event("r04", "acme", "stt-fast", stt, 15, 0.25, 0, june),
		event("r05", "acme", "stt-fast", stt, 45, 0.75, 0, june.Add(time.Hour)),
		event("r06", "acme", "tts-large", tts, 1000, 4, 4, june.Add(time.Minute)),
		event("r07", "acme", "tts-large", tts, 24, 0.125, 0, june.AddDate(0, 1, 0)), // July
		event("r08", "globex", "stt-fast", stt, 10, 0.0625, 0, lastMilli),
		event("r09", "globex", "stt-fast", stt, 20, 0.125, 0, june.Add(-1)),
		event("r10", "globex", "stt-fast", stt, 40, 0.25, 0, june.Add(1)),
		event("r11", "globex", "dubbing", tollgate.UnitRequests, 1, 8, 0, time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC)),
	}
	// Committed in two batches, the second repeating part of the first.
	must(t, s.Commit(ctx, events[:6], nil))
	must(t, s.Commit(ctx, events[3:], nil))

	all := []tollgate.UsageTotal{
		{OrgID: "acme", Model: "stt-fast", Period: "2025-05", Units: 210, Credits: 3.5, FreeCredits: 3},
		{OrgID: "acme", Model: "stt-fast", Period: "2025-06", Units: 60, Credits: 1, FreeCredits: 0},
		{OrgID: "acme", Model: "tts-large", Period: "2025-06", Units: 1000, Credits: 4, FreeCredits: 4},
		{OrgID: "acme", Model: "tts-large", Period: "2025-07", Units: 24, Credits: 0.125},
		{OrgID: "globex", Model: "dubbing", Period: "2024-12", Units: 1, Credits: 8},
		{OrgID: "globex", Model: "stt-fast", Period: "2025-05", Units: 30, Credits: 0.1875},
		{OrgID: "globex", Model: "stt-fast", Period: "2025-06", Units: 40, Credits: 0.25},
	}
	diff(t, "UsageTotals(zero: everything)", totals(t, s, time.Time{}), all, sortTotals)
	// since is inclusive, to the nanosecond.
	fromJune := []tollgate.UsageTotal{all[1], all[2], all[3], all[6]}
	diff(t, "UsageTotals(June)", totals(t, s, june), fromJune, sortTotals)
	diff(t, "UsageTotals(June, in another zone)", totals(t, s, june.In(time.FixedZone("EST", -5*60*60))), fromJune, sortTotals)
	diff(t, "UsageTotals(last nanosecond of May)", totals(t, s, lastNano), []tollgate.UsageTotal{
		{OrgID: "acme", Model: "stt-fast", Period: "2025-05", Units: 30, Credits: 0.5, FreeCredits: 0.5},
		all[1], all[2], all[3],
		{OrgID: "globex", Model: "stt-fast", Period: "2025-05", Units: 20, Credits: 0.125},
		all[6],
	}, sortTotals)
	diff(t, "UsageTotals(future)", totals(t, s, june.AddDate(1, 0, 0)), []tollgate.UsageTotal(nil))
}

// usageEvents are acme's and globex's events for the Usage tests: three
// UTC days (one reached through another zone), two units, and one event
// before 1970.
func usageEvents() []tollgate.UsageEvent {
	d1 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	d2 := d1.AddDate(0, 0, 1)
	d3 := d1.AddDate(0, 0, 2)
	tokyo := time.FixedZone("JST", 9*60*60)
	stt, chars := tollgate.UnitAudioSeconds, tollgate.UnitCharacters
	return []tollgate.UsageEvent{
		event("u01", "acme", "stt-fast", stt, 60, 1, 0, d1),
		event("u02", "acme", "stt-fast", stt, 30, 0.5, 0, d1.Add(12*time.Hour)),
		event("u03", "acme", "tts-large", chars, 100, 0.25, 0, d1.Add(13*time.Hour)),
		event("u04", "acme", "stt-fast", stt, 15, 0.25, 0, d2.Add(-1)),                       // last nanosecond of d1
		event("u05", "acme", "tts-large", chars, 200, 0.5, 0, d2.Add(8*time.Hour).In(tokyo)), // 17:00 on d2 in Tokyo
		event("u06", "acme", "stt-fast", stt, 45, 0.75, 0, d2.Add(23*time.Hour)),
		event("u07", "acme", "stt-slow", stt, 10, 0.125, 0, d3),
		event("u08", "acme", "tts-large", chars, 50, 0.125, 0, d3.Add(time.Hour).In(tokyo)), // 10:00 on d3 in Tokyo, 01:00 UTC
		event("u09", "acme", "stt-fast", stt, 1, 1, 0, time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC)),
		event("g01", "globex", "stt-fast", stt, 1000, 100, 0, d1.Add(time.Hour)),
		event("g02", "globex", "dubbing", tollgate.UnitRequests, 1, 5, 0, d2),
	}
}

func testUsageByDay(t *testing.T, s tollgate.Store) {
	seed(t, s)
	must(t, s.Commit(t.Context(), usageEvents(), nil))
	d1 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	stt, chars := tollgate.UnitAudioSeconds, tollgate.UnitCharacters
	day1 := []tollgate.UsageRow{
		{Day: "2025-06-01", Unit: stt, Requests: 3, Quantity: 105, Credits: 1.75},
		{Day: "2025-06-01", Unit: chars, Requests: 1, Quantity: 100, Credits: 0.25},
	}
	// Units sort as strings: audio_seconds before characters.
	day2 := []tollgate.UsageRow{
		{Day: "2025-06-02", Unit: stt, Requests: 1, Quantity: 45, Credits: 0.75},
		{Day: "2025-06-02", Unit: chars, Requests: 1, Quantity: 200, Credits: 0.5},
	}
	day3 := []tollgate.UsageRow{
		{Day: "2025-06-03", Unit: stt, Requests: 1, Quantity: 10, Credits: 0.125},
		{Day: "2025-06-03", Unit: chars, Requests: 1, Quantity: 50, Credits: 0.125},
	}
	cat := func(rows ...[]tollgate.UsageRow) []tollgate.UsageRow {
		var out []tollgate.UsageRow
		for _, r := range rows {
			out = append(out, r...)
		}
		return out
	}
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     []tollgate.UsageRow
	}{
		{"June on", d1, time.Time{}, cat(day1, day2, day3)},
		{"day 1", d1, d1.AddDate(0, 0, 1), day1},
		{"days 1-2, To exclusive", d1, d1.AddDate(0, 0, 2), cat(day1, day2)},
		{"to the first event of day 3, exclusive", d1, d1.AddDate(0, 0, 2).Add(1), cat(day1, day2, day3[:1])},
		{"from the last nanosecond of day 1", d1.AddDate(0, 0, 1).Add(-1), time.Time{}, cat(
			[]tollgate.UsageRow{{Day: "2025-06-01", Unit: stt, Requests: 1, Quantity: 15, Credits: 0.25}}, day2, day3)},
		{"From in another zone", d1.AddDate(0, 0, 2).In(time.FixedZone("EST", -5*60*60)), time.Time{}, day3},
		{"empty range", d1, d1, nil},
		{"before any", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"everything", time.Time{}, time.Time{}, cat(
			[]tollgate.UsageRow{{Day: "1969-12-31", Unit: stt, Requests: 1, Quantity: 1, Credits: 1}}, day1, day2, day3)},
	} {
		got := usage(t, s, tollgate.UsageQuery{OrgID: "acme", From: c.from, To: c.to, GroupBy: "day"})
		diff(t, "Usage by day, "+c.name, got, c.want)
	}
	diff(t, "Usage by day, unknown org", usage(t, s, tollgate.UsageQuery{OrgID: "nope", GroupBy: "day"}), []tollgate.UsageRow(nil))
}

func testUsageByModel(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	must(t, s.Commit(ctx, usageEvents(), nil))
	d1 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	stt, chars := tollgate.UnitAudioSeconds, tollgate.UnitCharacters
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     []tollgate.UsageRow
	}{
		{"June on", d1, time.Time{}, []tollgate.UsageRow{
			{Model: "stt-fast", Unit: stt, Requests: 4, Quantity: 150, Credits: 2.5},
			{Model: "stt-slow", Unit: stt, Requests: 1, Quantity: 10, Credits: 0.125},
			{Model: "tts-large", Unit: chars, Requests: 3, Quantity: 350, Credits: 0.875},
		}},
		{"day 2", d1.AddDate(0, 0, 1), d1.AddDate(0, 0, 2), []tollgate.UsageRow{
			{Model: "stt-fast", Unit: stt, Requests: 1, Quantity: 45, Credits: 0.75},
			{Model: "tts-large", Unit: chars, Requests: 1, Quantity: 200, Credits: 0.5},
		}},
		{"everything", time.Time{}, time.Time{}, []tollgate.UsageRow{
			{Model: "stt-fast", Unit: stt, Requests: 5, Quantity: 151, Credits: 3.5},
			{Model: "stt-slow", Unit: stt, Requests: 1, Quantity: 10, Credits: 0.125},
			{Model: "tts-large", Unit: chars, Requests: 3, Quantity: 350, Credits: 0.875},
		}},
		{"empty range", d1.AddDate(1, 0, 0), time.Time{}, nil},
	} {
		got := usage(t, s, tollgate.UsageQuery{OrgID: "acme", From: c.from, To: c.to, GroupBy: "model"})
		diff(t, "Usage by model, "+c.name, got, c.want)
	}

	// A model whose meter changed has a row per unit.
	must(t, s.Commit(ctx, []tollgate.UsageEvent{
		event("u99", "acme", "stt-fast", tollgate.UnitRequests, 1, 2, 0, d1.AddDate(0, 1, 0)),
	}, nil))
	diff(t, "Usage by model after a meter change", usage(t, s, tollgate.UsageQuery{
		OrgID: "acme", From: d1.AddDate(0, 0, 1), GroupBy: "model",
	}), []tollgate.UsageRow{
		{Model: "stt-fast", Unit: stt, Requests: 1, Quantity: 45, Credits: 0.75},
		{Model: "stt-fast", Unit: tollgate.UnitRequests, Requests: 1, Quantity: 1, Credits: 2},
		{Model: "stt-slow", Unit: stt, Requests: 1, Quantity: 10, Credits: 0.125},
		{Model: "tts-large", Unit: chars, Requests: 2, Quantity: 250, Credits: 0.625},
	})
	diff(t, "Usage(globex) by model", usage(t, s, tollgate.UsageQuery{OrgID: "globex", GroupBy: "model"}), []tollgate.UsageRow{
		{Model: "dubbing", Unit: tollgate.UnitRequests, Requests: 1, Quantity: 1, Credits: 5},
		{Model: "stt-fast", Unit: stt, Requests: 1, Quantity: 1000, Credits: 100},
	})
}

func testUsageQueryErrors(t *testing.T, s tollgate.Store) {
	seed(t, s)
	must(t, s.Commit(t.Context(), usageEvents(), nil))
	d1 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range []tollgate.UsageQuery{
		{OrgID: "acme"},
		{OrgID: "acme", GroupBy: "month"},
		{OrgID: "acme", GroupBy: "Day"},
		{OrgID: "acme", GroupBy: "day", From: d1, To: d1.Add(-1)},
		{OrgID: "acme", GroupBy: "model", From: d1, To: d1.AddDate(-1, 0, 0)},
	} {
		_, err := s.Usage(t.Context(), q)
		wantCode(t, fmt.Sprintf("Usage(%+v)", q), err, tollgate.CodeValidationError)
	}
}

// testConcurrentCommit: 20 goroutines commit their own events, in batches,
// plus one request id they all share: every event is stored exactly once.
func testConcurrentCommit(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	const workers, batches, size = 20, 10, 16
	at := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	shared := event("req_shared", "acme", "stt-fast", tollgate.UnitRequests, 1, 0.5, 0, at)
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches)
	for w := range workers {
		wg.Go(func() {
			for b := range batches {
				events := make([]tollgate.UsageEvent, 0, size+1)
				items := make([]tollgate.HistoryItem, 0, size)
				for i := range size {
					id := fmt.Sprintf("req_%02d_%02d_%02d", w, b, i)
					events = append(events, event(id, "acme", "stt-fast", tollgate.UnitRequests, 1, 0.25, 0, at.Add(time.Duration(i))))
					items = append(items, tollgate.HistoryItem{ID: "hist_" + id, OrgID: "acme", RequestID: id,
						Feature: "stt", CreatedAt: at.Add(time.Duration(w*batches*size + b*size + i))})
				}
				events = append(events, shared)
				if err := s.Commit(ctx, events, items); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	const n = workers * batches * size
	diff(t, "UsageTotals after concurrent commits", totals(t, s, time.Time{}), []tollgate.UsageTotal{
		{OrgID: "acme", Model: "stt-fast", Period: "2025-06", Units: n + 1, Credits: n*0.25 + 0.5},
	})
	diff(t, "Usage after concurrent commits", usage(t, s, tollgate.UsageQuery{OrgID: "acme", GroupBy: "model"}), []tollgate.UsageRow{
		{Model: "stt-fast", Unit: tollgate.UnitRequests, Requests: n + 1, Quantity: n + 1, Credits: n*0.25 + 0.5},
	})
	seen := map[string]bool{}
	for offset := 0; ; offset += 1000 {
		items, err := s.History(ctx, tollgate.HistoryFilter{OrgID: "acme", Limit: 1000, Offset: offset})
		must(t, err)
		for _, h := range items {
			if seen[h.ID] {
				t.Errorf("History lists %s twice", h.ID)
			}
			seen[h.ID] = true
		}
		if len(items) < 1000 {
			break
		}
	}
	if len(seen) != n {
		t.Errorf("History holds %d items, want %d", len(seen), n)
	}
}
