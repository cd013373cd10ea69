// Package ctxtime waits for a time or a context, whichever ends first.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, and reports whether the whole of d
// passed (false at once when ctx has ended).
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
