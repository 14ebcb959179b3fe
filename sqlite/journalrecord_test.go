package sqlite

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"
)

// TestDecodeJournal: the run of records ends at a bad checksum, another
// epoch or a gap in the seqs; what follows is not read.
func TestDecodeJournal(t *testing.T) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	e, i := batch(1, "d", at)
	rec := func(epoch, seq uint64) []byte { return appendRecord(nil, epoch, seq, e, i) }
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return append(out, make([]byte, 100)...)
	}
	flipped := rec(7, 2)
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name string
		data []byte
		want int
	}{
		{"three in a row", cat(rec(7, 1), rec(7, 2), rec(7, 3)), 3},
		{"zeros", make([]byte, 4096), 0},
		{"bad checksum", cat(rec(7, 1), flipped, rec(7, 3)), 1},
		{"another epoch", cat(rec(7, 1), rec(8, 2)), 1},
		{"a gap in the seqs", cat(rec(7, 1), rec(7, 3)), 1},
		{"an older record after", cat(rec(7, 5), rec(7, 6), rec(7, 2)), 2},
		{"cut short", rec(7, 1)[:40], 0},
	} {
		recs, err := decodeJournal(c.data)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if len(recs) != c.want {
			t.Errorf("%s: %d records, want %d", c.name, len(recs), c.want)
		}
		for _, r := range recs {
			if !reflect.DeepEqual(r.events, e) || !reflect.DeepEqual(r.items, i) {
				t.Errorf("%s: record %d decodes to %+v %+v, want %+v %+v", c.name, r.seq, r.events, r.items, e, i)
			}
		}
	}
}

// FuzzDecodeJournal: any bytes decode without panicking, in bounded time
// and memory; a record that decodes re-encodes to the same bytes.
func FuzzDecodeJournal(f *testing.F) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	e, i := batch(2, "f", at)
	f.Add(appendRecord(appendRecord(nil, 1, 1, e, i), 1, 2, nil, i[:1]))
	f.Add(appendRecord(nil, 1, 1, e[:1], nil))
	f.Add(make([]byte, journalHeader+8))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := decodeJournal(data)
		if err != nil {
			return
		}
		var again []byte
		var epoch uint64
		if len(recs) > 0 {
			epoch = binary.LittleEndian.Uint64(data[8:])
		}
		for _, r := range recs {
			again = appendRecord(again, epoch, r.seq, r.events, r.items)
		}
		if len(again) > len(data) || string(again) != string(data[:len(again)]) {
			t.Errorf("%d records re-encode to %d bytes that differ from the input's first ones", len(recs), len(again))
		}
	})
}

// FuzzDecodeBatch: any payload decodes without panicking, and one that
// decodes re-encodes to a payload that decodes to the same batch.
func FuzzDecodeBatch(f *testing.F) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	e, i := batch(2, "f", at)
	f.Add(appendBatch(nil, e, i))
	f.Add(appendBatch(nil, nil, i[:1]))
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		events, items, err := decodeBatch(payload)
		if err != nil {
			return
		}
		e2, i2, err := decodeBatch(appendBatch(nil, events, items))
		if err != nil {
			t.Fatalf("a decoded batch re-encodes to one that does not decode: %v", err)
		}
		if !reflect.DeepEqual(events, e2) || !reflect.DeepEqual(items, i2) {
			t.Errorf("round trip changed the batch:\n%+v %+v\n%+v %+v", events, items, e2, i2)
		}
	})
}
