// modelgate: reads and writes on connections use recvfrom and sendto, as
// HAProxy does, instead of read and write: the socket calls skip the VFS
// layer (fdget_pos, vfs_read, vfs_write, rw_verify_area). MSG_NOSIGNAL
// makes a write to a closed connection fail with EPIPE without raising
// SIGPIPE first (which the Go runtime would ignore anyway).

//go:build linux

package gnet

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func sockRead(fd int, p []byte) (int, error) {
	return sockCall(unix.SYS_RECVFROM, fd, p, 0)
}

func sockWrite(fd int, p []byte) (int, error) {
	return sockCall(unix.SYS_SENDTO, fd, p, unix.MSG_NOSIGNAL)
}

func sockCall(trap uintptr, fd int, p []byte, flags int) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := syscall.Syscall6(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)), uintptr(flags), 0, 0)
	switch e {
	case 0:
		return int(n), nil
	case unix.EAGAIN:
		return -1, unix.EAGAIN
	}
	return -1, e
}
