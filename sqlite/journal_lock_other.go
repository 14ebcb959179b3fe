//go:build !unix

package sqlite

import "os"

// journalLocks says whether lockJournal can lock here.
const journalLocks = false

// lockJournal cannot lock here: the store writes the tables directly, as
// when another process holds the journal.
func lockJournal(*os.File) (bool, error) { return false, nil }
