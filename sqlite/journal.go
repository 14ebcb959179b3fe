package sqlite

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
)

// The ledger journal is a write-ahead log in front of the usage_events and
// history tables. A group commit appends one record (the batch's events
// and items) to it with one write and one fdatasync, and is durable then;
// a goroutine moves what has been appended into the tables in large
// transactions (ingestion), every ingestEvery or sooner when enough has
// gathered or a read needs it. Every read of those tables ingests first,
// so a read sees every commit that returned before it started. With
// background sync (WithBackgroundSync) an append returns after the write
// and a goroutine syncs the files every BackgroundSyncEvery instead.
//
// Why: a SQLite commit of a request's event and history item writes a
// page of each of six B-trees (two WAL frames, two pwrites, per page) and
// syncs the WAL; at the few requests per commit of a moderately loaded
// gateway that is ~0.4 ms of a request's latency and most of its CPU
// (docs/architecture.md has the figures). One sequential write and a
// fdatasync of a file whose blocks already exist is ~0.13 ms here, and
// inserting thousands of rows per transaction costs a fraction per row.
//
// Two files alternate: appends go to the active one; ingestion switches
// appends to the other, inserts the first one's batches in one durable
// transaction, then invalidates it (zeroes its first record's header).
// Files are written from offset 0 each time they become active and are
// created full of zeros, so an fdatasync does not change their size (a
// growing file's fdatasync also commits the file system's journal: ~8×
// the tail latency here).
//
// A record is a 24-byte header, then the batch:
//
//	length  uint32  payload bytes
//	crc     uint32  CRC-32C of the header's last 16 bytes and the payload
//	epoch   uint64  random, new each time a file becomes active
//	seq     uint64  the record's number, one more than the file's previous
//	payload
//
// A file's records are the longest run from offset 0 of records with a
// good checksum, the first record's epoch and consecutive seqs: a torn
// append (a crash during it; it was never acknowledged) and the records of
// the file's earlier use end the run. Replaying a record twice is
// harmless: ingestion skips events and items already in the tables.
const (
	journalHeader   = 24
	journalPresize  = 2 << 20  // bytes of zeros a journal file is created with (it grows once if a round needs more)
	journalMaxBatch = 64 << 20 // a longer record is corrupt
	journalRows     = 4096     // pending events + items that start an ingestion at once
	journalBytes    = 1 << 20  // pending bytes that do (below journalPresize)
)

// journalHighWater is how many rows may wait for ingestion before
// appends wait for it too: the active file's batches are also held in
// memory, so without a bound a stalled ingestion would grow them without
// end. At ~90k rows/s of ingestion it is only reached when the tables
// stall (tests lower it).
var journalHighWater = 16 * journalRows

// ingestEvery is how often the journal's batches are moved into the
// tables when nothing else asks sooner (tests lengthen it).
var ingestEvery = 100 * time.Millisecond

// BackgroundSyncEvery is how often a journal opened with background sync
// (WithBackgroundSync) syncs what was appended since its last sync.
const BackgroundSyncEvery = 10 * time.Millisecond

var errJournalClosed = errors.New("the ledger journal is closed")

// errJournalBroken marks a journal whose file failed a write or a sync:
// what the disk holds is unknown, so it takes no more appends.
var errJournalBroken = errors.New("ledger journal: a write to the disk did not complete; restart the gateway")

type journalFile struct {
	f     *os.File
	name  string // f's path (f.Name() is the temporary one a created file was written under)
	epoch uint64
	off   int64 // where the next record goes
	// dirty: records were appended since the file was last synced
	// (background sync only).
	dirty bool
	// The batches appended since the file became active, in order (the
	// caller's slices are copied).
	events []tollgate.UsageEvent
	items  []tollgate.HistoryItem
}

func (jf *journalFile) rows() int { return len(jf.events) + len(jf.items) }

// ingestFunc inserts events and items in one durable transaction,
// skipping those already present. It calls pause, when not nil, after
// each insert statement with the time the statement took; pause returns
// when the ingestion may go on.
type ingestFunc func(ctx context.Context, events []tollgate.UsageEvent, items []tollgate.HistoryItem, pause func(worked time.Duration)) error

type journal struct {
	ingest ingestFunc

	mu      sync.Mutex
	files   [2]*journalFile
	active  int    // index of the file appends go to
	nextSeq uint64 // seq of the next record
	buf     []byte
	broken  error
	// appended counts records; ingested is the count of those that are
	// in the tables. A round ends by closing roundDone (and replacing it).
	appended, ingested uint64
	roundDone          chan struct{}
	roundErr           error // the last round's error, nil once one succeeds
	// retry is the file being ingested, or whose ingestion failed; its
	// records are those up to retryTarget.
	retry       *journalFile
	retryTarget uint64
	closed      bool // no more rounds will run
	flushing    int  // flush calls waiting for a round

	every time.Duration
	kick  chan struct{}
	stop  chan struct{}
	done  chan struct{}

	// syncEvery, when positive, is background sync: an append returns
	// once written, and a goroutine syncs the files appended to every
	// syncEvery (syncDone closes when it has stopped). Zero: every append
	// syncs before it returns.
	syncEvery time.Duration
	syncDone  chan struct{}
	// sync makes a file's writes durable (datasync; tests fail it).
	sync func(*os.File) error
	// appendSyncs and backgroundSyncs count the syncs of appends and of
	// the background goroutine (tests read them).
	appendSyncs, backgroundSyncs atomic.Int64
	// ingestRounds, ingestRows and ingestNanos count the rounds that
	// succeeded, the rows they moved into the tables and the time they
	// took, rests included (Store.LedgerIngestion).
	ingestRounds, ingestRows atomic.Uint64
	ingestNanos              atomic.Int64
}

// journalOptions are openJournal's settings; the zero value syncs every
// append.
type journalOptions struct {
	syncEvery time.Duration
	sync      func(*os.File) error // nil: datasync
}

// openJournal opens (creating) the journal files base+"-ledger0" and
// base+"-ledger1", ingests what they hold with ingest, invalidates them
// and starts the ingestion goroutine. ok is false when another process
// holds the journal (it has the same database open): the store then
// commits to the tables directly.
func openJournal(ctx context.Context, base string, ingest ingestFunc, o journalOptions) (_ *journal, ok bool, err error) {
	j := &journal{ingest: ingest, every: ingestEvery, roundDone: make(chan struct{}), kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), syncEvery: o.syncEvery, sync: o.sync}
	if j.sync == nil {
		j.sync = datasync
	}
	defer func() {
		if err != nil || !ok {
			j.closeFiles()
		}
	}()
	for i := range j.files {
		name := fmt.Sprintf("%s-ledger%d", base, i)
		f, err := openPresized(name)
		if err != nil {
			return nil, false, fmt.Errorf("open journal: %w", err)
		}
		j.files[i] = &journalFile{f: f, name: name}
		if i == 0 {
			// The lock is the first file's and lasts while it is open;
			// the kernel drops it when the process dies.
			locked, err := lockJournal(f)
			if err != nil {
				return nil, false, fmt.Errorf("lock journal %s: %w", name, err)
			}
			if !locked {
				return nil, false, nil
			}
		}
	}
	if err := j.replay(ctx); err != nil {
		return nil, false, err
	}
	j.files[0].epoch = rand.Uint64()
	go j.run()
	if j.syncEvery > 0 {
		j.syncDone = make(chan struct{})
		go j.syncLoop()
	}
	return j, true, nil
}

// openPresized opens name, creating it full of zeros (journalPresize
// bytes, synced, with its directory) when it does not exist.
func openPresized(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	tmp := name + ".tmp"
	f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for off := 0; off < journalPresize && err == nil; off += len(zeros) {
		_, err = f.Write(zeros)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncDir(name)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return f, nil
}

func syncDir(name string) error {
	dir, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// replay ingests both files' records in the order they were appended
// (seqs grow across files and restarts), invalidates the files that held
// any, and sets the next seq beyond every one seen.
func (j *journal) replay(ctx context.Context) error {
	var recs []journalRecord
	var held []*journalFile
	for _, jf := range j.files {
		data, err := os.ReadFile(jf.name)
		if err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
		rs, err := decodeJournal(data)
		if err != nil {
			return fmt.Errorf("journal %s: %w", jf.name, err)
		}
		if len(rs) > 0 {
			recs, held = append(recs, rs...), append(held, jf)
		}
	}
	slices.SortFunc(recs, func(a, b journalRecord) int { return cmp.Compare(a.seq, b.seq) })
	var events []tollgate.UsageEvent
	var items []tollgate.HistoryItem
	for _, r := range recs {
		events, items = append(events, r.events...), append(items, r.items...)
		j.nextSeq = max(j.nextSeq, r.seq+1)
	}
	if len(recs) > 0 {
		if err := j.ingest(ctx, events, items, nil); err != nil {
			return fmt.Errorf("replay journal: %w", err)
		}
	}
	for _, jf := range held {
		if err := invalidate(jf.f); err != nil {
			return fmt.Errorf("journal %s: %w", jf.name, err)
		}
	}
	return nil
}

// invalidate zeroes the first record's header, ending the file's run at
// nothing, and syncs it.
func invalidate(f *os.File) error {
	var zero [journalHeader]byte
	if _, err := f.WriteAt(zero[:], 0); err != nil {
		return err
	}
	return datasync(f)
}

// append writes events and items as one record and syncs it.
func (j *journal) append(events []tollgate.UsageEvent, items []tollgate.HistoryItem) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	// Backpressure: over the high-water mark, wait for a round to take
	// the rows, as long as rounds succeed (a failing ingestion is retried
	// every tick; the journal holds the rows durably meanwhile).
	for j.broken == nil && j.roundErr == nil && j.files[j.active].rows() >= journalHighWater {
		done := j.roundDone
		j.wake()
		j.mu.Unlock()
		<-done
		j.mu.Lock()
	}
	if j.broken != nil {
		return j.broken
	}
	jf := j.files[j.active]
	j.buf = appendRecord(j.buf[:0], jf.epoch, j.nextSeq, events, items)
	if len(j.buf)-journalHeader > journalMaxBatch {
		// Replay would take it for the end of the journal.
		return fmt.Errorf("ledger journal: a batch of %d bytes is over the %d a record holds", len(j.buf)-journalHeader, journalMaxBatch)
	}
	if _, err := jf.f.WriteAt(j.buf, jf.off); err != nil {
		return j.breakLocked(err)
	}
	if j.syncEvery > 0 {
		jf.dirty = true
	} else {
		j.appendSyncs.Add(1)
		if err := j.sync(jf.f); err != nil {
			return j.breakLocked(err)
		}
	}
	jf.off += int64(len(j.buf))
	j.nextSeq++
	j.appended++
	jf.events = append(jf.events, events...)
	jf.items = append(jf.items, items...)
	if jf.rows() >= journalRows || jf.off >= journalBytes {
		j.wake()
	}
	return nil
}

// syncLoop is background sync: every syncEvery it syncs each file that
// was appended to since its last sync, outside the lock (appends go on
// meanwhile; what they write after the sync began waits for the next
// tick). A failed sync breaks the journal, as a failed append sync does.
func (j *journal) syncLoop() {
	defer close(j.syncDone)
	t := time.NewTicker(j.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		}
		for _, jf := range j.files {
			j.mu.Lock()
			due := jf.dirty && j.broken == nil
			jf.dirty = false
			j.mu.Unlock()
			if !due {
				continue
			}
			j.backgroundSyncs.Add(1)
			if err := j.sync(jf.f); err != nil {
				j.mu.Lock()
				j.breakLocked(err)
				j.mu.Unlock()
			}
		}
	}
}

// breakLocked breaks the journal after a failed write or sync (the first
// failure is the one kept) and returns the error appends get from now on.
func (j *journal) breakLocked(err error) error {
	if j.broken == nil {
		j.broken = fmt.Errorf("%w (%v)", errJournalBroken, err)
	}
	return j.broken
}

// backlog is how many rows the files hold that are not in the tables yet.
func (j *journal) backlog() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.files[0].rows() + j.files[1].rows()
}

// err is the error every append returns once a write or a sync failed.
func (j *journal) err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.broken
}

func (j *journal) wake() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// flush returns once every record appended before it was called is in the
// tables, or with the error of the ingestion round that failed to put it
// there, or ctx's.
func (j *journal) flush(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	target := j.appended
	j.flushing++
	defer func() { j.flushing-- }()
	for j.ingested < target {
		if j.closed {
			return errJournalClosed
		}
		done := j.roundDone
		j.mu.Unlock()
		j.wake()
		select {
		case <-done:
		case <-ctx.Done():
			j.mu.Lock()
			return ctx.Err()
		}
		j.mu.Lock()
		if j.ingested < target && j.roundErr != nil {
			return j.roundErr
		}
	}
	return nil
}

func (j *journal) run() {
	defer close(j.done)
	t := time.NewTicker(j.every)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		case <-j.kick:
		}
		j.round()
	}
}

// round moves the active file's batches into the tables: it switches
// appends to the other file, ingests, and invalidates the first. When the
// ingestion fails, the file stays as it is (its batches are on disk and in
// memory) and the next round retries it before switching again; appends
// go on to the other file meanwhile.
func (j *journal) round() error {
	j.mu.Lock()
	if j.retry == nil {
		jf := j.files[j.active]
		if jf.off == 0 {
			j.endRoundLocked(j.appended, nil)
			j.mu.Unlock()
			return nil
		}
		j.retry, j.retryTarget = jf, j.appended
		j.active = 1 - j.active
		next := j.files[j.active]
		next.epoch, next.off = rand.Uint64(), 0
	}
	jf := j.retry
	j.mu.Unlock()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err := j.ingest(ctx, jf.events, jf.items, j.pause)
	cancel()
	if err == nil {
		err = invalidate(jf.f)
	}
	if err == nil {
		j.ingestRounds.Add(1)
		j.ingestRows.Add(uint64(jf.rows()))
		j.ingestNanos.Add(int64(time.Since(start)))
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("ledger journal: ingest: %w", err)
		j.endRoundLocked(j.ingested, err)
		return err
	}
	jf.events, jf.items, jf.off, jf.dirty = jf.events[:0], jf.items[:0], 0, false
	j.retry = nil
	j.endRoundLocked(j.retryTarget, nil)
	return nil
}

// pause is a round's rest after each insert statement. The ingestion
// shares the machine with the requests it records, and run flat out a
// round holds a core for milliseconds at a time (a few hundred rows at
// 2,000 requests/s, thousands under load), during which arriving requests
// wait for the CPU: side by side at 2,000 requests/s on 2 cores, resting
// took 0.7–1.5 ms off the gateway's p99 (docs/architecture.md). So a
// round rests as long as each statement worked, using at most half a core,
// unless it is in a hurry: the active file already holds a round's worth
// of rows (the next round is due), a read waits for this one (flush), or
// the journal is closing; it then only yields to other goroutines.
// Resting doubles a round's length, and so how long it holds SQLite's
// write lock (admin writes wait behind it), not the CPU it takes.
func (j *journal) pause(worked time.Duration) {
	if j.hurried() {
		runtime.Gosched()
		return
	}
	time.Sleep(worked)
}

// hurried says whether the round running must not rest (see pause).
func (j *journal) hurried() bool {
	select {
	case <-j.stop:
		return true
	default:
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	jf := j.files[j.active]
	return j.flushing > 0 || jf.rows() >= journalRows || jf.off >= journalBytes
}

// endRoundLocked records a round's outcome and wakes whoever waits for it.
func (j *journal) endRoundLocked(ingested uint64, err error) {
	j.ingested, j.roundErr = ingested, err
	close(j.roundDone)
	j.roundDone = make(chan struct{})
}

// closeFiles closes the files without ingesting (their content is
// replayed by the next open).
func (j *journal) closeFiles() error {
	var errs []error
	for _, jf := range j.files {
		if jf != nil {
			errs = append(errs, jf.f.Close())
		}
	}
	return errors.Join(errs...)
}

// close stops ingestion, ingests what is left and closes the files.
// When that ingestion fails, the files keep the batches for the next open.
func (j *journal) close() error {
	close(j.stop)
	<-j.done
	if j.syncDone != nil {
		<-j.syncDone
	}
	var err error
	for {
		j.mu.Lock()
		left := j.ingested < j.appended
		j.mu.Unlock()
		if !left {
			break
		}
		if err = j.round(); err != nil {
			break
		}
	}
	j.mu.Lock()
	j.closed = true
	j.broken = errJournalClosed
	close(j.roundDone) // wake any flush, which then sees closed
	j.roundDone = make(chan struct{})
	j.mu.Unlock()
	return errors.Join(err, j.closeFiles())
}
