package proxy

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// socketPair returns two connected stream sockets, closed when the test ends.
func socketPair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// The ring runs every send of a submission, in order, and reports each
// one's outcome: all of it, the part a full socket took, EAGAIN when it took
// nothing, EBADF for no socket. It never waits for a socket to drain.
func TestSendRingOutcomes(t *testing.T) {
	r, err := newSendRing(4) // fewer entries than sends: submit goes in rounds
	if err != nil {
		t.Fatalf("io_uring on this machine: %v", err)
	}
	t.Cleanup(r.close)

	a, aPeer := socketPair(t)
	full, fullPeer := socketPair(t)
	if err := unix.SetsockoptInt(full, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<10); err != nil {
		t.Fatal(err)
	}
	big := loopPattern(1 << 20)
	sends := []ringSend{
		{fd: a, buf: []byte("first ")},
		{fd: full, buf: big},
		{fd: -1, buf: []byte("nowhere")},
		{fd: a, buf: []byte("second ")},
		{fd: full, buf: []byte("more")},
		{fd: a, buf: []byte("third")},
	}
	if err := r.submit(sends); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int32{6, -1, -int32(unix.EBADF), 7, -int32(unix.EAGAIN), 5} {
		if i == 1 {
			continue // checked below
		}
		if sends[i].res != want {
			t.Errorf("send %d: res %d, want %d", i, sends[i].res, want)
		}
	}
	took := int(sends[1].res)
	if took <= 0 || took >= len(big) {
		t.Fatalf("1 MiB to a socket with a 4 KiB buffer: res %d, want part of it", took)
	}

	got := make([]byte, 64)
	n, err := unix.Read(aPeer, got)
	if err != nil || string(got[:n]) != "first second third" {
		t.Errorf("the peer read %q (%v), want the three sends in order", got[:n], err)
	}
	var part []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fullPeer, buf)
		if err != nil {
			break // EAGAIN: all that was sent is read
		}
		part = append(part, buf[:n]...)
	}
	if !bytes.Equal(part, big[:took]) {
		t.Errorf("the full socket's peer read %d bytes, want the first %d of the message", len(part), took)
	}
}
