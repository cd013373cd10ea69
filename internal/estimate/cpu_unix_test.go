//go:build unix

package estimate

import (
	"syscall"
	"time"
)

// cpuTime is the process' CPU time (user and system) so far: what an
// estimate costs, whatever else shares the machine.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
