package gnet

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the fork's own additions (README.modelgate.md): PauseRead and
// ResumeRead, and the batch-end hook. They use ports the kernel picks, so
// they never collide with upstream's fixed ones.

// eventually polls cond until it holds or 10 s pass; the caller checks
// what it waited for.
func eventually(cond func() bool) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(10 * time.Second); !cond() && time.Now().Before(end); {
		<-tick.C
	}
}

// pauseClient reads everything it is given, and pauses reading after its
// first read.
type pauseClient struct {
	BuiltinEventEngine
	traffic atomic.Int64 // OnTraffic calls
	read    atomic.Int64 // bytes read
	paused  chan error
}

func (h *pauseClient) OnTraffic(c Conn) Action {
	buf, _ := c.Next(-1)
	h.read.Add(int64(len(buf)))
	if h.traffic.Add(1) == 1 {
		h.paused <- c.PauseRead()
	}
	return None
}

// TestPauseReadHoldsThePeerBack: a paused connection is not read at all, so
// the peer's writes block once the kernel's buffers are full (back-pressure,
// not buffering in the loop); after ResumeRead everything arrives.
func TestPauseReadHoldsThePeerBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() //nolint:errcheck
	h := &pauseClient{paused: make(chan error, 1)}
	cli, err := NewClient(h, WithSocketRecvBuffer(4096))
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer cli.Stop() //nolint:errcheck
	c, err := cli.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close() //nolint:errcheck
	_ = peer.(*net.TCPConn).SetWriteBuffer(4096)

	if _, err := peer.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.paused:
		if err != nil {
			t.Fatalf("PauseRead: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first bytes were never read")
	}

	// Write until the kernel pushes back. If the loop kept reading, the
	// writes would never block and the deadline below would end the test.
	chunk := make([]byte, 16<<10)
	written := int64(len("first"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the peer wrote %d bytes without blocking: the paused connection was read (%d reads, %d bytes)", written, h.traffic.Load(), h.read.Load())
		}
		_ = peer.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := peer.Write(chunk)
		written += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := h.traffic.Load(); n != 1 {
		t.Errorf("OnTraffic ran %d times while paused, want once (before the pause)", n)
	}

	// Resume on the loop; the rest arrives.
	if err := c.Wake(func(c Conn, _ error) error { return c.ResumeRead() }); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetWriteDeadline(time.Time{})
	eventually(func() bool { return h.read.Load() >= written })
	if got := h.read.Load(); got != written {
		t.Errorf("after ResumeRead the loop read %d bytes of the %d written", got, written)
	}
}

// batchClient records whether OnBatchEnd follows the OnTraffic of its batch.
type batchClient struct {
	BuiltinEventEngine
	pending  bool         // loop only: OnTraffic ran since the last OnBatchEnd
	ends     atomic.Int64 // OnBatchEnd calls that followed traffic
	received atomic.Int64
}

func (h *batchClient) OnTraffic(c Conn) Action {
	buf, _ := c.Next(-1)
	h.received.Add(int64(len(buf)))
	h.pending = true
	return None
}

func (h *batchClient) OnBatchEnd(EventLoop) {
	if h.pending {
		h.pending = false
		h.ends.Add(1)
	}
}

// TestBatchEndFollowsTraffic: a client handler that implements BatchEnder
// is called on its loop after the batch in which it read, before the loop
// waits again, so that what the batch produced can be sent together.
func TestBatchEndFollowsTraffic(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() //nolint:errcheck
	h := &batchClient{}
	cli, err := NewClient(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer cli.Stop() //nolint:errcheck
	if _, err := cli.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close() //nolint:errcheck
	for i := 1; i <= 3; i++ {
		if _, err := peer.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		eventually(func() bool { return h.received.Load() >= int64(4*i) && h.ends.Load() >= 1 })
		if h.received.Load() < int64(4*i) {
			t.Fatalf("write %d never read", i)
		}
	}
	if h.ends.Load() < 1 {
		t.Errorf("OnBatchEnd never followed a batch with traffic")
	}
}
