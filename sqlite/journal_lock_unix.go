//go:build unix

package sqlite

import (
	"errors"
	"os"
	"syscall"
)

// journalLocks says whether lockJournal can lock here.
const journalLocks = true

// lockJournal takes an exclusive lock on f without waiting; false when
// another process (or another open file in this one) holds it. The
// kernel drops the lock when the holder dies.
func lockJournal(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
