// Package policy is the request policy of modelgate's data plane, written
// once for both of its engines (the event loops and the goroutine path in
// package proxy): what a request must be to be forwarded, how its target
// and forwarded headers are rewritten, which backend answers are refused,
// and when a failed attempt is tried again. Each is a pure function of its
// inputs; the engines differ only in how they move bytes.
package policy

import (
	"bytes"
	"fmt"
	"net/http"
)

// Rejection is a request or an answer the gateway refuses: the status it
// answers the client with, and why, in words the client can act on.
type Rejection struct {
	Status int
	Reason string
}

func (r *Rejection) Error() string { return r.Reason }

func reject(status int, format string, args ...any) *Rejection {
	return &Rejection{Status: status, Reason: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Rejection {
	return reject(http.StatusBadRequest, format, args...)
}

// HeadEnd returns the length of the message head at the start of buf,
// through the empty line that ends it, or -1 while that line has not
// arrived. A line ends at LF, with or without CR before it (RFC 9112
// section 2.2), which is where fasthttp's parser ends it too: both engines
// frame a request with this one rule, so the bytes after a head are the
// same body or next request whichever engine reads them.
func HeadEnd(buf []byte) int {
	for i := 0; ; i++ {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j
		// buf[i] ends a line; the line after it is empty if it is "\n" or "\r\n".
		switch {
		case i+1 < len(buf) && buf[i+1] == '\n':
			return i + 2
		case i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n':
			return i + 3
		}
	}
}

// LeadingEmptyLines returns how many bytes of empty lines ("\r\n" or
// "\n") start buf: what fasthttp's parser skips before a request or status
// line (RFC 9112 section 2.2 lets a recipient ignore them), so both engines
// skip them before they frame a head.
func LeadingEmptyLines(buf []byte) int {
	n := 0
	for {
		switch {
		case n < len(buf) && buf[n] == '\n':
			n++
		case n+1 < len(buf) && buf[n] == '\r' && buf[n+1] == '\n':
			n += 2
		default:
			return n
		}
	}
}
