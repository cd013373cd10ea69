package benchproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mem reads VmRSS and VmHWM of /proc/PID/status (in kB there) in bytes:
// VmHWM is the kernel's own peak, which no sampling can miss. ok is false
// once the process is gone. Outside Linux there is no /proc and ok is
// false; the file has no build constraint so that bench/memory still
// builds there.
func Mem(pid int) (rss, hwm uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm, rss > 0
}
