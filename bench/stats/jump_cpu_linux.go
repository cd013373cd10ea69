package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID); the
// jump suite locks each run's goroutine to its thread to charge each look its own
// CPU, which a preemption does not inflate as it does the wall time.
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
