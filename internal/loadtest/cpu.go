package loadtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// ProcessCPU is the CPU time (user + system) used so far by process pid
// and, with children, by its live children (nginx's workers), from /proc.
// ok is false where /proc is not available.
func ProcessCPU(pid int, children bool) (d time.Duration, ok bool) {
	d, _, ok = procStat(strconv.Itoa(pid))
	if !ok || !children {
		return d, ok
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		if cpu, ppid, ok := procStat(filepath.Base(dir)); ok && ppid == pid {
			d += cpu
		}
	}
	return d, true
}

// procStat reads utime + stime and the parent pid from /proc/<pid>/stat.
func procStat(pid string) (cpu time.Duration, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) may hold spaces; fields resume after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick, ppid, true
}

// MachineCPU is the CPU time every CPU has spent busy so far (user, nice,
// system, irq, softirq and steal, from /proc/stat). ok is false where /proc
// is not available.
func MachineCPU() (d time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * clockTick, true
}
