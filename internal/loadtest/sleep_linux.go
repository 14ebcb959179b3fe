package loadtest

import (
	"runtime"
	"syscall"
	"time"
)

// The open-loop dispatcher sleeps with nanosleep(2) on its own thread, with
// a 1 µs timer slack: Go's timers wake up to 1 ms late when the process is
// otherwise idle (the netpoller waits in whole milliseconds), which would
// send requests in bursts and add up to 1 ms to every latency. nanosleep
// wakes within tens of µs and costs no CPU while waiting.

const prSetTimerSlack = 29

// lockDispatchThread wires the calling goroutine to its thread and sets the
// thread's timer slack to 1 µs; the returned func undoes both. The thread
// must not end with the goroutine: a child started from it with Pdeathsig
// (see childSysProcAttr) would be killed.
func lockDispatchThread() (unlock func()) {
	runtime.LockOSThread()
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1000, 0)
	return func() {
		syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 0, 0) // 0: the thread's default
		runtime.UnlockOSThread()
	}
}

// sleepFor blocks for about d.
func sleepFor(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Nanosleep(&ts, nil) // EINTR ends it early; the caller checks the time again
}
