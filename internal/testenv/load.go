package testenv

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load sends requests from several goroutines until it is stopped or the
// test ends.
type Load struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	sent atomic.Int64
}

// StartLoad calls send from workers goroutines until the load is stopped:
// back to back, or with every > 0 at most once per every per worker.
func StartLoad(t testing.TB, workers int, every time.Duration, send func()) *Load {
	l := &Load{stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var tick <-chan time.Time
			if every > 0 {
				ticker := time.NewTicker(every)
				defer ticker.Stop()
				tick = ticker.C
			}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				send()
				l.sent.Add(1)
				if tick != nil {
					select {
					case <-l.stop:
						return
					case <-tick:
					}
				}
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop stops the load and waits for the requests in flight. It may be
// called more than once, from any goroutine.
func (l *Load) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Sent is how many requests the load has sent.
func (l *Load) Sent() int64 { return l.sent.Load() }

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers,
// for the output of a process or a goroutine that a test polls.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
