//go:build !unix

package estimate

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }
