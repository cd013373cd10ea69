//go:build !linux

package proxy

import "errors"

// sendRing is Linux's io_uring (sendring_linux.go); elsewhere the loops send
// each message with its own system call.
type sendRing struct{}

type ringSend struct {
	fd  int
	buf []byte
	res int32
}

const (
	ringNotSent = -1 << 31
	ringUnknown = -1<<31 + 1
)

func newSendRing(uint32) (*sendRing, error) { return nil, errors.New("io_uring is Linux's") }

func (*sendRing) close() {}

func (*sendRing) submit([]ringSend) error { return errors.New("io_uring is Linux's") }
