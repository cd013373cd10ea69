//go:build linux

package proxy

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A sendRing hands the kernel every send of one event-loop batch in one
// system call, through io_uring.
//
// Why: each send to a waiting peer (a backend, a client) wakes it, and the
// kernel usually switches to the woken task when the sending system call
// returns. A loop that sends each message with its own call is switched
// out after almost every one of them (0.6-0.9 context switches per
// request, the largest cost of a proxied request on a busy machine), and a
// peer woken once per message handles one message per wake-up. Submitted
// together, the sends run one after another inside one call; the loop is
// switched out at most once per batch, and each peer wakes once for all
// its messages (0.14-0.35 switches per request, docs/benchmarks.md).
//
// The sends are non-blocking (MSG_DONTWAIT), so the kernel runs each at
// once and completes it with what fitted in the socket, or EAGAIN; the
// loop handles a short send as before (a slow client leaves the loop, the
// rest of a request goes through gnet's buffer).
//
// Only the ring's plumbing lives here, hand-written because no io_uring
// library can be fetched here (the Go module proxy refuses the known ones)
// and the need is small: one operation, submit and reap. Where io_uring is
// missing or forbidden (old kernels, container seccomp profiles) the loops
// send each message with its own call.
type sendRing struct {
	fd      int
	mem     [][]byte // the mmapped regions
	entries uint32

	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []ioSQE

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []ioCQE
}

// ringSend is one send: buf on fd; res is what the kernel answered (bytes
// sent, or -errno).
type ringSend struct {
	fd  int
	buf []byte
	res int32
}

// The kernel's ABI (include/uapi/linux/io_uring.h).
const (
	ioringOpSend     = 26
	ioringEnterWait  = 1 // IORING_ENTER_GETEVENTS
	ioringOffSQRing  = 0
	ioringOffCQRing  = 0x8000000
	ioringOffSQEs    = 0x10000000
	ioringSingleMmap = 1 // IORING_FEAT_SINGLE_MMAP
)

type ioSQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioURingParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  ioSQRingOffsets
	CQOff                                                                  ioCQRingOffsets
}

type ioSQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	MsgFlags    uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	Pad         uint64
}

type ioCQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// newSendRing sets up a ring for up to entries sends per submission and
// checks that the kernel runs sends through it.
func newSendRing(entries uint32) (*sendRing, error) {
	var p ioURingParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &sendRing{fd: int(fd), entries: p.SQEntries}
	if err := r.mmap(&p); err != nil {
		r.close()
		return nil, err
	}
	// A send on no socket must come back EBADF: the kernel knows the
	// operation (older ones answer EINVAL).
	probe := []ringSend{{fd: -1, buf: probeByte[:]}}
	if err := r.submit(probe); err != nil {
		r.close()
		return nil, err
	}
	if probe[0].res != -int32(unix.EBADF) {
		r.close()
		return nil, fmt.Errorf("io_uring send: %w", unix.Errno(-probe[0].res))
	}
	return r, nil
}

func (r *sendRing) mmap(p *ioURingParams) error {
	sqSize := int(p.SQOff.Array + p.SQEntries*4)
	cqSize := int(p.CQOff.CQEs + p.CQEntries*uint32(unsafe.Sizeof(ioCQE{})))
	if p.Features&ioringSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	sq, err := unix.Mmap(r.fd, ioringOffSQRing, sqSize, prot, flags)
	if err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	r.mem = append(r.mem, sq)
	cq := sq
	if p.Features&ioringSingleMmap == 0 {
		if cq, err = unix.Mmap(r.fd, ioringOffCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("io_uring mmap: %w", err)
		}
		r.mem = append(r.mem, cq)
	}
	sqes, err := unix.Mmap(r.fd, ioringOffSQEs, int(p.SQEntries)*int(unsafe.Sizeof(ioSQE{})), prot, flags)
	if err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	r.mem = append(r.mem, sqes)

	r.sqTail = (*uint32)(unsafe.Pointer(&sq[p.SQOff.Tail]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&sq[p.SQOff.RingMask]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Pointer(&sq[p.SQOff.Array])), p.SQEntries)
	r.sqes = unsafe.Slice((*ioSQE)(unsafe.Pointer(&sqes[0])), p.SQEntries)
	r.cqHead = (*uint32)(unsafe.Pointer(&cq[p.CQOff.Head]))
	r.cqTail = (*uint32)(unsafe.Pointer(&cq[p.CQOff.Tail]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&cq[p.CQOff.RingMask]))
	r.cqes = unsafe.Slice((*ioCQE)(unsafe.Pointer(&cq[p.CQOff.CQEs])), p.CQEntries)
	return nil
}

func (r *sendRing) close() {
	for _, m := range r.mem {
		_ = unix.Munmap(m)
	}
	r.mem = nil
	_ = unix.Close(r.fd)
}

// probeByte is the probe's buffer, in static memory like every buffer
// submit passes must be outside the stack (heap or static): the kernel gets
// its address, and a goroutine's stack can move.
var probeByte [1]byte

// What submit leaves in res when the kernel did not answer for a send.
const (
	ringNotSent = -1 << 31   // the ring did not take it: the caller sends it itself
	ringUnknown = -1<<31 + 1 // taken, but its outcome was not collected: its connection must close
)

// submit runs sends and sets each one's res. The buffers are only read
// during the call and must not be on a stack. An error means the ring
// broke: the sends it did not take have res ringNotSent, those whose
// outcome it did not collect ringUnknown, and the ring must not be used
// again.
func (r *sendRing) submit(sends []ringSend) error {
	for len(sends) > 0 {
		n := min(uint32(len(sends)), r.entries)
		for i := range n {
			sends[i].res = ringUnknown
		}
		tail := *r.sqTail // only this loop writes the tail
		for i := range n {
			s := &sends[i]
			idx := (tail + i) & r.sqMask
			r.sqes[idx] = ioSQE{
				Opcode:   ioringOpSend,
				Fd:       int32(s.fd),
				Addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s.buf)))),
				Len:      uint32(len(s.buf)),
				MsgFlags: unix.MSG_NOSIGNAL | unix.MSG_DONTWAIT,
				UserData: uint64(i),
			}
			r.sqArray[idx] = idx
		}
		atomic.StoreUint32(r.sqTail, tail+n)
		// The kernel takes the entries in order; non-blocking sends run
		// and complete while they are taken.
		var taken uint32
		var err error
		for taken < n {
			got, errno := r.enter(n-taken, 0, 0)
			if errno == unix.EINTR {
				continue
			}
			if errno != 0 {
				err = fmt.Errorf("io_uring_enter: %w", errno)
				break
			}
			if got == 0 {
				err = fmt.Errorf("io_uring_enter took none of %d sends", n-taken)
				break
			}
			taken += got
		}
		if werr := r.reap(sends, taken); werr != nil && err == nil {
			err = werr
		}
		if err != nil {
			for i := taken; i < uint32(len(sends)); i++ {
				sends[i].res = ringNotSent
			}
			return err
		}
		sends = sends[n:]
	}
	return nil
}

// reap collects the completions of the first n of sends, waiting for any
// a kernel deferred.
func (r *sendRing) reap(sends []ringSend, n uint32) error {
	head := atomic.LoadUint32(r.cqHead)
	for reaped := uint32(0); reaped < n; {
		if ctail := atomic.LoadUint32(r.cqTail); head != ctail {
			for ; head != ctail; head++ {
				c := r.cqes[head&r.cqMask]
				sends[c.UserData].res = c.Res
				reaped++
			}
			atomic.StoreUint32(r.cqHead, head)
			continue
		}
		if _, errno := r.enter(0, n-reaped, ioringEnterWait); errno != 0 && errno != unix.EINTR {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
	return nil
}

func (r *sendRing) enter(submit, wait uint32, flags uintptr) (uint32, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), uintptr(wait), flags, 0, 0)
	return uint32(n), errno
}
