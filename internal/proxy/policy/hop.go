package policy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Header rewriting both engines apply to what they forward: hop-by-hop
// headers out in both directions, and the answer in the gateway's version.

var (
	hdrConnection = []byte("Connection")
	hdrExpect     = []byte("Expect")
	strHTTP11     = []byte("HTTP/1.1")

	// hopHeaders are meaningful for one connection only and are never
	// forwarded (RFC 9110 7.6.1), in either direction. Connection goes
	// last: the headers it lists are removed first.
	hopHeaders = [][]byte{
		[]byte("Keep-Alive"),
		[]byte("Proxy-Authenticate"),
		[]byte("Proxy-Authorization"),
		[]byte("Proxy-Connection"),
		[]byte("Te"),
		[]byte("Trailer"),
		[]byte("Transfer-Encoding"),
		[]byte("Upgrade"),
	}
)

// headerSet is what stripHopHeaders needs of a request or response header.
type headerSet interface {
	PeekBytes(key []byte) []byte
	DelBytes(key []byte)
}

// Bits of the hop-by-hop headers a header holds: bit i for hopHeaders[i],
// then Connection and (requests only) Expect.
const (
	hopTrailer    = 1 << 5 // hopHeaders[5]
	hopConnection = 1 << 8 // len(hopHeaders)
	hopExpect     = hopConnection << 1
)

// hopBit returns the bit of a header name as fasthttp stores it (normalised
// unless normalising is off, in which case DelBytes compares the name as
// given too), 0 for the headers that are forwarded. DelBytes deletes
// exactly the stored names equal to these, so a header without any of them
// has nothing to delete.
func hopBit(k []byte) uint {
	switch string(k) {
	case "Keep-Alive":
		return 1 << 0
	case "Proxy-Authenticate":
		return 1 << 1
	case "Proxy-Authorization":
		return 1 << 2
	case "Proxy-Connection":
		return 1 << 3
	case "Te":
		return 1 << 4
	case "Trailer":
		return hopTrailer
	case "Transfer-Encoding":
		return 1 << 6
	case "Upgrade":
		return 1 << 7
	case "Connection":
		return hopConnection
	case "Expect":
		return hopExpect
	}
	return 0
}

// StripRequestHopHeaders is stripHopHeaders followed by deleting Expect,
// on a request header. One pass over the headers finds which of them are
// there, and only those are deleted, instead of scanning the headers once
// per name.
func StripRequestHopHeaders(h *fasthttp.RequestHeader, scratch *[]byte) {
	// Iterating a request header parses its Cookie headers into fasthttp's
	// cookie list, which would change how they are forwarded; the (rare)
	// requests with cookies take the scan per name.
	if len(h.PeekAll(fasthttp.HeaderCookie)) > 0 {
		stripHopHeaders(h, scratch)
		h.DelBytes(hdrExpect)
		return
	}
	var found uint
	for k := range h.All() {
		found |= hopBit(k)
	}
	stripFound(h, found, scratch)
}

// StripResponseHopHeaders is stripHopHeaders on a response header, in one
// pass over the headers (see StripRequestHopHeaders).
func StripResponseHopHeaders(h *fasthttp.ResponseHeader, scratch *[]byte) {
	// The answer goes to the client in the gateway's HTTP version, whatever
	// the backend's was: an HTTP/1.0 backend's status line with a body the
	// gateway streams chunked would be read as one until close.
	if !h.IsHTTP11() {
		h.SetProtocol(strHTTP11)
	}
	var found uint
	for k := range h.All() {
		found |= hopBit(k)
	}
	// Expect is a request header; a response's is forwarded as before.
	stripFound(h, found&^hopExpect, scratch)
}

// stripFound deletes the hop-by-hop headers found in h. A Trailer header
// means fasthttp may also hold values in its trailer section, which the
// iteration does not show: then every name is deleted as stripHopHeaders
// does.
func stripFound(h headerSet, found uint, scratch *[]byte) {
	if found == 0 {
		return
	}
	if found&hopTrailer != 0 {
		stripHopHeaders(h, scratch)
		if found&hopExpect != 0 {
			h.DelBytes(hdrExpect)
		}
		return
	}
	if found&hopConnection != 0 {
		stripConnectionListed(h, scratch)
	}
	for i, k := range hopHeaders {
		if found&(1<<i) != 0 {
			h.DelBytes(k)
		}
	}
	if found&hopConnection != 0 {
		h.DelBytes(hdrConnection)
	}
	if found&hopExpect != 0 {
		h.DelBytes(hdrExpect)
	}
}

// stripHopHeaders removes the hop-by-hop headers and those the Connection
// header lists.
func stripHopHeaders(h headerSet, scratch *[]byte) {
	stripConnectionListed(h, scratch)
	for _, k := range hopHeaders {
		h.DelBytes(k)
	}
	h.DelBytes(hdrConnection)
}

// stripConnectionListed removes the headers the Connection header lists.
func stripConnectionListed(h headerSet, scratch *[]byte) {
	if v := h.PeekBytes(hdrConnection); len(v) > 0 {
		// Copy: deleting headers reshuffles the storage v points into.
		*scratch = append((*scratch)[:0], v...)
		for tok := range bytes.SplitSeq(*scratch, []byte{','}) {
			if tok = bytes.TrimSpace(tok); len(tok) > 0 {
				h.DelBytes(tok)
			}
		}
	}
}
