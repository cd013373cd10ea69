package policy

import (
	"bytes"
	"net/http"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// CheckRequest refuses what fasthttp's parser lets through and nginx or
// HAProxy would not forward (fasthttp itself already refuses duplicate or
// signed Content-Length, unknown Transfer-Encoding, control characters in
// values, a missing Host):
//   - an HTTP version other than 1.0 and 1.1: 505;
//   - a request target longer than MaxURIBytes: 414;
//   - more than MaxHeaders header fields: 431;
//   - a header name that is not a token (a space in it, say): 400;
//   - a folded header line (obs-fold, RFC 9112 section 5.2): 400;
//   - both Content-Length and Transfer-Encoding (fasthttp drops the
//     former; a backend might not): 400.
//
// A header line ending in a bare LF is refused (400): fasthttp frames such
// a head differently depending on how its bytes arrived, so no engine
// forwards one. (The request line may end in a bare LF; the request goes
// upstream with CRLF.)
func CheckRequest(h *fasthttp.RequestHeader, l Limits) error {
	switch string(h.Protocol()) {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		return reject(http.StatusHTTPVersionNotSupported, "HTTP version %q not supported: use HTTP/1.1", truncate(h.Protocol()))
	}
	if l.MaxURIBytes > 0 && len(h.RequestURI()) > l.MaxURIBytes {
		return reject(http.StatusRequestURITooLong, "request target longer than %d bytes", l.MaxURIBytes)
	}
	return checkFields(h.RawHeaders(), l.MaxHeaders, http.StatusBadRequest)
}

// Limits are the request limits CheckRequest applies; zero: no limit.
type Limits struct {
	MaxHeaders  int // header fields per request (431)
	MaxURIBytes int // bytes of the request target (414)
}

// CheckRequestHead is CheckRequest's check of the header lines on a raw
// request head (through its empty line), for an engine that holds the raw
// bytes before it parses them: a head fasthttp would not parse at once (a
// bare LF ending it, say) is refused here with the status CheckRequest
// would give it once parsed.
func CheckRequestHead(raw []byte, l Limits) error {
	i := bytes.IndexByte(raw, '\n')
	if i < 0 {
		return badRequest("request head has no request line")
	}
	// The request line's version and target first, in CheckRequest's order.
	line := bytes.TrimSuffix(raw[:i], []byte{'\r'})
	if sp := bytes.LastIndexByte(line, ' '); sp >= 0 {
		switch proto := line[sp+1:]; string(proto) {
		case "HTTP/1.1", "HTTP/1.0":
		default:
			return reject(http.StatusHTTPVersionNotSupported, "HTTP version %q not supported: use HTTP/1.1", truncate(proto))
		}
		if m := bytes.IndexByte(line, ' '); m >= 0 && m < sp && l.MaxURIBytes > 0 && sp-m-1 > l.MaxURIBytes {
			return reject(http.StatusRequestURITooLong, "request target longer than %d bytes", l.MaxURIBytes)
		}
	}
	return checkFields(raw[i+1:], l.MaxHeaders, http.StatusBadRequest)
}

// checkFields checks a raw header section (field lines up to and including
// the empty line): each name a token, no folded line, at most maxFields
// fields (0: no limit), and not both Content-Length and Transfer-Encoding.
// A violation is answered with status (400 for a request, 502 for an
// answer); too many fields with 431.
func checkFields(raw []byte, maxFields, status int) error {
	var n int
	var cl, te bool
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			i = len(raw) - 1
		}
		line := raw[:i]
		raw = raw[i+1:]
		if len(line) == 0 && n == 0 && status == http.StatusBadRequest {
			// A request head without fields: fasthttp keeps no raw fields
			// of it, so how its empty line ends is not judged in either
			// engine. (Both engines hold an answer's raw head: there, it is.)
			break
		}
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return reject(status, "header line ends in a bare LF: end each line with CRLF")
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return reject(status, "folded header line (obs-fold) not allowed")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			name := line
			if colon > 0 {
				name = line[:colon]
			}
			return reject(status, "malformed header name %q", truncate(name))
		}
		n++
		if maxFields > 0 && n > maxFields {
			return reject(http.StatusRequestHeaderFieldsTooLarge, "more than %d header fields", maxFields)
		}
		name := line[:colon]
		cl = cl || bytes.EqualFold(name, []byte("Content-Length"))
		te = te || bytes.EqualFold(name, []byte("Transfer-Encoding"))
	}
	if cl && te {
		return reject(status, "both Content-Length and Transfer-Encoding: the body's length is ambiguous")
	}
	return nil
}

// isToken reports whether b is an RFC 9110 token (a field name).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// Header names the gateway sets itself, canonical as fasthttp stores them.
var (
	hdrForwardedFor   = []byte("X-Forwarded-For")
	hdrForwardedProto = []byte("X-Forwarded-Proto")
	hdrForwardedHost  = []byte("X-Forwarded-Host")
	hdrForwarded      = []byte("Forwarded")
	hdrRealIP         = []byte("X-Real-Ip")
	strHTTP           = []byte("http")
	strHTTPS          = []byte("https")
	commaSpace        = []byte(", ")
)

// SetForwarded makes the request's X-Forwarded-For, -Proto and -Host the
// gateway's, one of each whatever the client sent: X-Forwarded-For is the
// client's values, in order and joined, followed by the peer's address;
// -Proto is the scheme the client used; -Host the request's Host. The
// client's Forwarded and X-Real-IP headers are removed: they would tell a
// backend that trusts them whatever the client wants (the gateway keeps the
// X-Forwarded-For chain instead). scratch is reused storage; the grown one
// is returned.
func SetForwarded(h *fasthttp.RequestHeader, peer netip.Addr, tls bool, scratch []byte) []byte {
	scratch = scratch[:0]
	for _, v := range h.PeekAll(string(hdrForwardedFor)) {
		if len(v) == 0 {
			continue
		}
		if len(scratch) > 0 {
			scratch = append(scratch, commaSpace...)
		}
		scratch = append(scratch, v...)
	}
	if peer.IsValid() {
		if len(scratch) > 0 {
			scratch = append(scratch, commaSpace...)
		}
		scratch = peer.Unmap().AppendTo(scratch)
	}
	h.DelBytes(hdrForwardedFor)
	h.DelBytes(hdrForwardedProto)
	h.DelBytes(hdrForwardedHost)
	if len(h.PeekBytes(hdrForwarded)) > 0 {
		h.DelBytes(hdrForwarded)
	}
	if len(h.PeekBytes(hdrRealIP)) > 0 {
		h.DelBytes(hdrRealIP)
	}
	h.SetCanonical(hdrForwardedFor, scratch)
	if tls {
		h.SetCanonical(hdrForwardedProto, strHTTPS)
	} else {
		h.SetCanonical(hdrForwardedProto, strHTTP)
	}
	h.SetCanonical(hdrForwardedHost, h.Host())
	return scratch
}
