package loadtest

import "syscall"

// childSysProcAttr makes a child get SIGTERM if the bench dies without
// stopping it. Linux sends it when the thread that started the child ends;
// the Go runtime ends a thread only when a goroutine exits while locked to
// it, which this package never does (see lockDispatchThread).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
