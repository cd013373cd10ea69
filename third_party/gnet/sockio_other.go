// modelgate: see sockio_linux.go.

//go:build !linux && !windows

package gnet

import "golang.org/x/sys/unix"

func sockRead(fd int, p []byte) (int, error) { return unix.Read(fd, p) }

func sockWrite(fd int, p []byte) (int, error) { return unix.Write(fd, p) }
