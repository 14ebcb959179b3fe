package httpapi

import (
	"context"
	"time"

	"github.com/tollgate/tollgate"
)

// streamMeter keeps a stream's audio covered by reservations: the first
// chunk is reserved at the handshake (in the stream's admission), and
// each next one while half of the audio reserved is left, in the
// background, so the stream does not wait for it. Audio past what is
// reserved is never forwarded: when the audio reserved runs out the next
// chunk is waited for, or reserved there and then, and a refusal ends the
// stream with its error (quota_exceeded or billing_required, 4029).
//
// Only the stream's up pump calls cover; finish calls drain and settle
// once the pump has stopped forwarding.
type streamMeter struct {
	s      *Server
	budget *tollgate.Budget // nil: nothing is reserved
	start  time.Time        // the stream's admission: its chunks are reserved in its month
	params streamParams
	price  float64
	chunk  float64 // seconds per reservation
	// first is the seconds reserved at the handshake; firstFree whether
	// they were drawn on free credits.
	first     float64
	firstFree bool
	extra     []tollgate.Reservation
	reserved  float64 // seconds, every reservation together
	// pending receives the reservation being made in the background.
	pending chan reserveResult
	// refused: the last background reservation was refused; the next is
	// tried when the audio reserved runs out.
	refused bool
}

type reserveResult struct {
	res tollgate.Reservation
	err error
}

// epsilon is the float slack of "is this audio covered".
const epsilon = 1e-9

func newStreamMeter(s *Server, st *stream, reserved float64) *streamMeter {
	m := st.model()
	sm := &streamMeter{s: s, budget: st.budget, start: st.start, params: st.params, price: m.Meter.Price, chunk: m.Stream.Chunk(),
		first: reserved, reserved: reserved}
	if r := st.adm.got.Reservation; r != nil {
		sm.firstFree = r.Free
	}
	return sm
}

// cover makes sure the first after bytes of audio are reserved, and
// starts reserving the next chunk when half of the audio reserved is left.
func (m *streamMeter) cover(after int64) error {
	if m.budget == nil {
		return nil
	}
	need := m.params.Seconds(after)
	for need > m.reserved+epsilon {
		if m.pending == nil {
			m.prefetch()
		}
		r := <-m.pending
		m.pending = nil
		if r.err != nil {
			return r.err
		}
		m.add(r.res)
	}
	if m.pending != nil {
		select {
		case r := <-m.pending:
			m.pending = nil
			if r.err != nil {
				m.refused = true
			} else {
				m.add(r.res)
			}
		default:
		}
	}
	if m.pending == nil && !m.refused && m.reserved-need < m.chunk/2 {
		m.prefetch()
	}
	return nil
}

func (m *streamMeter) add(r tollgate.Reservation) {
	m.extra = append(m.extra, r)
	m.reserved += r.Units
	m.refused = false
}

// prefetch reserves the next chunk in the background.
func (m *streamMeter) prefetch() {
	ch := make(chan reserveResult, 1)
	m.pending = ch
	go func() {
		res, err := m.reserve()
		ch <- reserveResult{res, err}
	}()
}

// reserve holds a chunk, or what is left of the budget when a chunk is
// refused but at least one sample frame's worth is left.
func (m *streamMeter) reserve() (tollgate.Reservation, error) {
	seconds := m.chunk
	for attempt := 0; ; attempt++ {
		res, err := m.s.Quota.Reserve(context.Background(), *m.budget, seconds*m.price, seconds, m.start)
		if err == nil {
			return res, nil
		}
		left, ok := affordable(err, m.price, m.params)
		if attempt == 2 || !ok || left >= seconds {
			return res, err
		}
		seconds = left
	}
}

// drain waits for a background reservation, so that it is settled too.
func (m *streamMeter) drain() {
	if m.pending == nil {
		return
	}
	r := <-m.pending
	m.pending = nil
	if r.err == nil {
		m.add(r.res)
	}
}

// share splits seconds of audio over the reservations in order: the
// first chunk's share, then each next one's; the last takes what is left.
func (m *streamMeter) share(seconds float64, each func(i int, s float64)) {
	left := seconds
	n := 1 + len(m.extra)
	for i := 0; i < n; i++ {
		held := m.first
		if i > 0 {
			held = m.extra[i-1].Units
		}
		take := min(left, held)
		if i == n-1 || m.budget == nil {
			take = left
		}
		left -= take
		each(i, take)
		if m.budget == nil {
			return
		}
	}
}

// freeShare is the credits of seconds drawn on free credits.
func (m *streamMeter) freeShare(seconds float64) float64 {
	var free float64
	m.share(seconds, func(i int, s float64) {
		if (i == 0 && m.firstFree) || (i > 0 && m.extra[i-1].Free) {
			free += s * m.price
		}
	})
	return free
}

// settle settles every reservation after the first at its share of
// seconds and returns the first's share, which the stream's admission
// settles with its lease.
func (m *streamMeter) settle(seconds float64) (credits, units float64) {
	m.share(seconds, func(i int, s float64) {
		if i == 0 {
			credits, units = s*m.price, s
			return
		}
		if err := m.s.Quota.Settle(context.Background(), m.extra[i-1], s*m.price, s); err != nil {
			m.s.logger().Error("settle stream reservation", "org", m.extra[i-1].OrgID, "err", err)
		}
	})
	return credits, units
}
