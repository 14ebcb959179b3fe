//go:build !linux

package sqlite

import "os"

// datasync makes f's written data durable: File.Sync (fsync, or
// F_FULLFSYNC on macOS).
func datasync(f *os.File) error { return f.Sync() }
