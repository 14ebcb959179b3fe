package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func history(t *testing.T, s tollgate.Store, f tollgate.HistoryFilter) []tollgate.HistoryItem {
	t.Helper()
	items, err := s.History(t.Context(), f)
	must(t, err)
	return items
}

func historyItem(id, org, feature string, at time.Time) tollgate.HistoryItem {
	return tollgate.HistoryItem{
		ID: id, OrgID: org, KeyID: "key_" + org, RequestID: "req_" + id, Model: feature + "-model",
		Feature: feature, Status: 200, Unit: tollgate.UnitCharacters, Quantity: 42, Credits: 0.5,
		Input: "in " + id, Output: "out " + id, CreatedAt: at,
	}
}

func testHistory(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	a1 := tollgate.HistoryItem{
		ID: "hist_a1", OrgID: "acme", KeyID: "key_1", RequestID: "req_a1", Model: "tts-large",
		Feature: "tts", Status: 200, Unit: tollgate.UnitCharacters, Quantity: 1234, Credits: 0.75,
		Input: "Grüße, 世界 — \"quoted\"\n", Output: "audio/mpeg 3.2s", CreatedAt: t0.Add(-2 * time.Hour),
	}
	a2 := tollgate.HistoryItem{
		ID: "hist_a2", OrgID: "acme", KeyID: "key_1", RequestID: "req_a2", Model: "stt-fast",
		Feature: "stt", Status: 429, Code: tollgate.CodeQuotaExceeded, Unit: tollgate.UnitAudioSeconds,
		Input: "audio/wav 12.5s", Output: "quota_exceeded", CreatedAt: t0.Add(-time.Hour),
	}
	b := historyItem("hist_b", "acme", "tts", t0)
	c := historyItem("hist_c", "acme", "tts", t0) // same time as b: the greater ID first
	a5 := historyItem("hist_a5", "acme", "stt", t0.Add(time.Hour))
	g1 := historyItem("hist_g1", "globex", "tts", t0)
	g2 := historyItem("hist_g2", "globex", "tts", t0.Add(2*time.Hour))
	must(t, s.Commit(ctx, nil, []tollgate.HistoryItem{b, g2, a1}))
	must(t, s.Commit(ctx, nil, []tollgate.HistoryItem{a5, c, g1, a2}))

	for _, h := range []tollgate.HistoryItem{a1, a2, b} {
		got, err := s.HistoryItem(ctx, h.OrgID, h.ID)
		must(t, err)
		diff(t, "HistoryItem("+h.ID+")", got, &h)
	}

	for _, c := range []struct {
		f    tollgate.HistoryFilter
		want []tollgate.HistoryItem
	}{
		{tollgate.HistoryFilter{OrgID: "acme"}, []tollgate.HistoryItem{a5, c, b, a2, a1}},
		{tollgate.HistoryFilter{OrgID: "acme", Feature: "tts"}, []tollgate.HistoryItem{c, b, a1}},
		{tollgate.HistoryFilter{OrgID: "acme", Feature: "stt"}, []tollgate.HistoryItem{a5, a2}},
		{tollgate.HistoryFilter{OrgID: "acme", Feature: "dubbing"}, nil},
		{tollgate.HistoryFilter{OrgID: "acme", Limit: 2}, []tollgate.HistoryItem{a5, c}},
		{tollgate.HistoryFilter{OrgID: "acme", Limit: 2, Offset: 2}, []tollgate.HistoryItem{b, a2}},
		{tollgate.HistoryFilter{OrgID: "acme", Limit: 2, Offset: 4}, []tollgate.HistoryItem{a1}},
		{tollgate.HistoryFilter{OrgID: "acme", Offset: 5}, nil},
		{tollgate.HistoryFilter{OrgID: "acme", Feature: "tts", Limit: 1, Offset: 1}, []tollgate.HistoryItem{b}},
		{tollgate.HistoryFilter{OrgID: "globex"}, []tollgate.HistoryItem{g2, g1}},
		{tollgate.HistoryFilter{OrgID: "nope"}, nil},
	} {
		diff(t, fmt.Sprintf("History(%+v)", c.f), history(t, s, c.f), c.want)
	}

	for _, f := range []tollgate.HistoryFilter{
		{OrgID: "acme", Limit: -1},
		{OrgID: "acme", Offset: -1},
	} {
		_, err := s.History(ctx, f)
		wantCode(t, fmt.Sprintf("History(%+v)", f), err, tollgate.CodeValidationError)
	}
}

// testHistoryLimits: a zero Limit means 50, and no page is longer than
// 1000 items.
func testHistoryLimits(t *testing.T, s tollgate.Store) {
	seed(t, s)
	const n = 1001
	items := make([]tollgate.HistoryItem, n)
	for i := range items {
		items[i] = historyItem(fmt.Sprintf("hist_%04d", i), "globex", "tts", t0.Add(time.Duration(i)*time.Second))
	}
	must(t, s.Commit(t.Context(), nil, items))
	newest := func(k int) []tollgate.HistoryItem {
		out := make([]tollgate.HistoryItem, k)
		for i := range out {
			out[i] = items[n-1-i]
		}
		return out
	}
	diff(t, "History (default limit)", history(t, s, tollgate.HistoryFilter{OrgID: "globex"}), newest(50))
	for _, limit := range []int{1000, 1001, 1 << 30} {
		got := history(t, s, tollgate.HistoryFilter{OrgID: "globex", Limit: limit})
		if len(got) != 1000 {
			t.Errorf("History(Limit %d): %d items, want 1000", limit, len(got))
		}
	}
	diff(t, "History (last page)", history(t, s, tollgate.HistoryFilter{OrgID: "globex", Limit: 10, Offset: 1000}),
		[]tollgate.HistoryItem{items[0]})
}

// testHistoryOtherOrg: another org's item is not_found, exactly like a
// missing one, for every verb, and stays untouched.
func testHistoryOtherOrg(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	mine := historyItem("hist_mine", "acme", "tts", t0)
	theirs := historyItem("hist_theirs", "globex", "tts", t0)
	must(t, s.Commit(ctx, nil, []tollgate.HistoryItem{mine, theirs}))

	_, getErr := s.HistoryItem(ctx, "acme", theirs.ID)
	wantCode(t, "HistoryItem(another org's)", getErr, tollgate.CodeNotFound)
	delErr := s.DeleteHistory(ctx, "acme", theirs.ID)
	wantCode(t, "DeleteHistory(another org's)", delErr, tollgate.CodeNotFound)
	got, err := s.HistoryItem(ctx, "globex", theirs.ID)
	must(t, err)
	diff(t, "HistoryItem(globex) after acme's attempts", got, &theirs)
	diff(t, "History(acme)", history(t, s, tollgate.HistoryFilter{OrgID: "acme"}), []tollgate.HistoryItem{mine})
	_, err = s.HistoryItem(ctx, "", theirs.ID)
	wantCode(t, "HistoryItem(no org)", err, tollgate.CodeNotFound)

	// The answer is the same once the item is really gone.
	must(t, s.DeleteHistory(ctx, "globex", theirs.ID))
	_, goneErr := s.HistoryItem(ctx, "acme", theirs.ID)
	wantCode(t, "HistoryItem(deleted)", goneErr, tollgate.CodeNotFound)
	if a, b := tollgate.ErrorMessage(getErr), tollgate.ErrorMessage(goneErr); a != b {
		t.Errorf("another org's item answers %q, a missing one %q: want the same", a, b)
	}
	if a, b := tollgate.ErrorMessage(delErr), tollgate.ErrorMessage(s.DeleteHistory(ctx, "acme", theirs.ID)); a != b {
		t.Errorf("deleting another org's item answers %q, a missing one %q: want the same", a, b)
	}

	// Deleting one's own works once.
	must(t, s.DeleteHistory(ctx, "acme", mine.ID))
	wantCode(t, "DeleteHistory(again)", s.DeleteHistory(ctx, "acme", mine.ID), tollgate.CodeNotFound)
	_, err = s.HistoryItem(ctx, "acme", mine.ID)
	wantCode(t, "HistoryItem(deleted own)", err, tollgate.CodeNotFound)
	diff(t, "History(acme) after delete", history(t, s, tollgate.HistoryFilter{OrgID: "acme"}), []tollgate.HistoryItem(nil))
	wantCode(t, "DeleteHistory(unknown)", s.DeleteHistory(ctx, "acme", "hist_nope"), tollgate.CodeNotFound)
}

func testPruneHistory(t *testing.T, s tollgate.Store) {
	ctx := t.Context()
	seed(t, s)
	old := historyItem("hist_old", "acme", "tts", t0.Add(-2*time.Hour))
	justBefore := historyItem("hist_just_before", "globex", "stt", t0.Add(-1))
	at := historyItem("hist_at", "acme", "tts", t0)
	later := historyItem("hist_later", "globex", "stt", t0.Add(time.Hour))
	ev := event("req_old", "acme", "tts-large", tollgate.UnitCharacters, 42, 0.5, 0, t0.Add(-2*time.Hour))
	must(t, s.Commit(ctx, []tollgate.UsageEvent{ev}, []tollgate.HistoryItem{old, justBefore, at, later}))

	prune := func(before time.Time, want int) {
		t.Helper()
		n, err := s.PruneHistory(ctx, before)
		must(t, err)
		if n != want {
			t.Errorf("PruneHistory(%v) = %d, want %d", before, n, want)
		}
	}
	prune(time.Time{}, 0)
	prune(t0, 2) // strictly before
	prune(t0, 0)
	diff(t, "History(acme) after prune", history(t, s, tollgate.HistoryFilter{OrgID: "acme"}), []tollgate.HistoryItem{at})
	diff(t, "History(globex) after prune", history(t, s, tollgate.HistoryFilter{OrgID: "globex"}), []tollgate.HistoryItem{later})
	// The ledger is not history: its events stay.
	diff(t, "UsageTotals after prune", totals(t, s, time.Time{}), []tollgate.UsageTotal{
		{OrgID: "acme", Model: "tts-large", Period: "2025-06", Units: 42, Credits: 0.5},
	})

	// Many at once.
	const n = 2500
	items := make([]tollgate.HistoryItem, n)
	for i := range items {
		items[i] = historyItem(fmt.Sprintf("hist_%04d", i), []string{"acme", "globex"}[i%2], "tts", t0.Add(-time.Duration(i+1)*time.Minute))
	}
	must(t, s.Commit(ctx, nil, items))
	prune(t0, n)
	prune(t0.Add(24*time.Hour), 2)
	diff(t, "History(acme) after pruning all", history(t, s, tollgate.HistoryFilter{OrgID: "acme"}), []tollgate.HistoryItem(nil))
}
