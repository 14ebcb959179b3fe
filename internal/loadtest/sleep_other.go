//go:build !linux

package loadtest

import "time"

// Elsewhere the dispatcher uses Go's timers, which may wake up to about 1 ms
// late on an idle process: open-loop latencies include that.

func lockDispatchThread() (unlock func()) { return func() {} }

func sleepFor(d time.Duration) { time.Sleep(d) }
