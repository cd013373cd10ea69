//go:build !linux

package main

import "time"

// threadCPU is not measured here: the jump suite reports wall times only.
func threadCPU() (time.Duration, bool) { return 0, false }
