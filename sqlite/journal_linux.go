package sqlite

import (
	"os"
	"syscall"
)

// datasync makes f's written data durable: fdatasync, which skips the
// inode's timestamps (the journal's files never change size).
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
