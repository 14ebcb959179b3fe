//go:build !linux

package loadtest

import "syscall"

// childSysProcAttr: elsewhere a child notices the bench is gone when its
// stdin closes (nginx does not; stop the bench with Ctrl-C, not kill -9).
func childSysProcAttr() *syscall.SysProcAttr { return nil }
