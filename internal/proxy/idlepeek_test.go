package proxy

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/modelgate/modelgate/third_party/gnet"
)

// peekConn is the part of a gnet connection idleQuiet reads: its socket,
// and nothing in gnet's own buffer.
type peekConn struct {
	gnet.Conn
	fd int
}

func (c peekConn) Fd() int              { return c.fd }
func (c peekConn) InboundBuffered() int { return 0 }

// TestIdleQuietPeeksTheSocket: an idle backend connection is reused only
// while its socket holds nothing: bytes the backend sent after its answer,
// or its end of stream, make it unusable (the loop closes it instead of
// reading them as the next client's answer).
func TestIdleQuietPeeksTheSocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	var buf [1]byte
	bc := &backConn{gc: peekConn{fd: fds[0]}}
	if !idleQuiet(bc, &buf) {
		t.Error("a socket with nothing to read is not quiet")
	}
	if _, err := unix.Write(fds[1], []byte("HTTP/1.1 200 OK\r\n")); err != nil {
		t.Fatal(err)
	}
	if idleQuiet(bc, &buf) {
		t.Error("a socket holding stray bytes is quiet")
	}
	if idleQuiet(bc, &buf) {
		t.Error("the peek consumed the stray bytes")
	}
	var drain [64]byte
	if _, err := unix.Read(fds[0], drain[:]); err != nil {
		t.Fatal(err)
	}
	if !idleQuiet(bc, &buf) {
		t.Error("a drained socket is not quiet")
	}
	unix.Close(fds[1])
	if idleQuiet(bc, &buf) {
		t.Error("a socket whose peer closed is quiet")
	}
}
