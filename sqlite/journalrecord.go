package sqlite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/tollgate/tollgate"
)

// The journal's record format (journal.go describes the file): a 24-byte
// header, then the batch's events and items in a compact binary form.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends one record to b.
func appendRecord(b []byte, epoch, seq uint64, events []tollgate.UsageEvent, items []tollgate.HistoryItem) []byte {
	start := len(b)
	b = append(b, make([]byte, journalHeader)...)
	b = appendBatch(b, events, items)
	sealRecord(b[start:], epoch, seq)
	return b
}

// sealRecord fills in the header of rec (one record, header then payload).
func sealRecord(rec []byte, epoch, seq uint64) {
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(rec)-journalHeader))
	binary.LittleEndian.PutUint64(rec[8:], epoch)
	binary.LittleEndian.PutUint64(rec[16:], seq)
	crc := crc32.Update(crc32.Update(0, castagnoli, rec[8:journalHeader]), castagnoli, rec[journalHeader:])
	binary.LittleEndian.PutUint32(rec[4:], crc)
}

// appendBatch appends a record's payload: the events, then the items.
func appendBatch(b []byte, events []tollgate.UsageEvent, items []tollgate.HistoryItem) []byte {
	b = binary.AppendUvarint(b, uint64(len(events)))
	for i := range events {
		e := &events[i]
		b = appendStrings(b, e.RequestID, e.OrgID, e.KeyID, e.Model, string(e.Unit))
		b = appendFloats(b, e.Quantity, e.Credits, e.FreeCredits)
		b = binary.AppendVarint(b, e.Time.UnixNano())
	}
	b = binary.AppendUvarint(b, uint64(len(items)))
	for i := range items {
		h := &items[i]
		b = appendStrings(b, h.ID, h.OrgID, h.KeyID, h.RequestID, h.Model, h.Feature)
		b = binary.AppendVarint(b, int64(h.Status))
		b = appendStrings(b, string(h.Code), string(h.Unit))
		b = appendFloats(b, h.Quantity, h.Credits)
		b = appendStrings(b, h.Input, h.Output)
		b = binary.AppendVarint(b, h.CreatedAt.UnixNano())
	}
	return b
}

func appendStrings(b []byte, ss ...string) []byte {
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func appendFloats(b []byte, fs ...float64) []byte {
	for _, f := range fs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return b
}

type journalRecord struct {
	seq    uint64
	events []tollgate.UsageEvent
	items  []tollgate.HistoryItem
}

// decodeJournal returns a file's run of records (see the package's
// journal comment). A record inside the run whose checksum is good but
// whose batch does not decode, or holds an invalid event or item, is an
// error: it was written by a gateway that acknowledged it, so it must not
// be dropped silently.
func decodeJournal(data []byte) ([]journalRecord, error) {
	var out []journalRecord
	var epoch uint64
	for off := 0; len(data)-off >= journalHeader; {
		hdr := data[off : off+journalHeader]
		n := int(binary.LittleEndian.Uint32(hdr[0:]))
		ep, seq := binary.LittleEndian.Uint64(hdr[8:]), binary.LittleEndian.Uint64(hdr[16:])
		if n > journalMaxBatch || n > len(data)-off-journalHeader {
			break
		}
		payload := data[off+journalHeader : off+journalHeader+n]
		crc := crc32.Update(crc32.Update(0, castagnoli, hdr[8:]), castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		if len(out) == 0 {
			epoch = ep
		} else if ep != epoch || seq != out[len(out)-1].seq+1 {
			break
		}
		r := journalRecord{seq: seq}
		var err error
		if r.events, r.items, err = decodeBatch(payload); err != nil {
			return nil, fmt.Errorf("record %d at offset %d: %w", seq, off, err)
		}
		out = append(out, r)
		off += journalHeader + n
	}
	return out, nil
}

var errBatch = errors.New("malformed batch")

type batchReader struct {
	b   []byte
	err error
}

func (r *batchReader) uvarint() uint64 { return readVarint(r, binary.Uvarint) }
func (r *batchReader) varint() int64   { return readVarint(r, binary.Varint) }

// readVarint reads one number with read (binary.Uvarint or Varint).
func readVarint[T uint64 | int64](r *batchReader, read func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := read(r.b)
	if n <= 0 {
		r.err = errBatch
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *batchReader) str() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errBatch
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *batchReader) float() float64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errBatch
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

// count reads a list length, refusing one that the rest of the batch
// cannot hold (each element takes at least minSize bytes).
func (r *batchReader) count(minSize int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/minSize) {
		r.err = errBatch
	}
	if r.err != nil {
		return 0
	}
	return int(n)
}

func decodeBatch(payload []byte) ([]tollgate.UsageEvent, []tollgate.HistoryItem, error) {
	r := &batchReader{b: payload}
	events := make([]tollgate.UsageEvent, r.count(5+24+1))
	for i := range events {
		e := &events[i]
		e.RequestID, e.OrgID, e.KeyID, e.Model, e.Unit = r.str(), r.str(), r.str(), r.str(), tollgate.Unit(r.str())
		e.Quantity, e.Credits, e.FreeCredits = r.float(), r.float(), r.float()
		e.Time = time.Unix(0, r.varint()).UTC()
		if r.err == nil {
			if err := e.Validate(); err != nil {
				return nil, nil, fmt.Errorf("event %d: %w", i, err)
			}
		}
	}
	items := make([]tollgate.HistoryItem, r.count(6+1+2+16+2+1))
	for i := range items {
		h := &items[i]
		h.ID, h.OrgID, h.KeyID, h.RequestID, h.Model, h.Feature = r.str(), r.str(), r.str(), r.str(), r.str(), r.str()
		h.Status = int(r.varint())
		h.Code, h.Unit = tollgate.Code(r.str()), tollgate.Unit(r.str())
		h.Quantity, h.Credits = r.float(), r.float()
		h.Input, h.Output = r.str(), r.str()
		h.CreatedAt = time.Unix(0, r.varint()).UTC()
		if r.err == nil {
			if err := h.Validate(); err != nil {
				return nil, nil, fmt.Errorf("history item %d: %w", i, err)
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errBatch
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	return events, items, nil
}
