package policy

import (
	"bytes"
	"net/http"
)

// CheckResponseHead refuses a backend answer whose head (raw, through its
// empty line) a client could read differently than the gateway: a header
// name that is not a token, a folded line, both Content-Length and
// Transfer-Encoding (RFC 9112 section 6.1: a message smuggling attempt or a
// broken server), and 101 Switching Protocols to a request that asked for
// no upgrade (the gateway would hand the client an unknown protocol). Each
// is a bad gateway (502): the backend connection is not reused. It reads
// the raw head only, so that it runs before fasthttp parses the head (which
// waits for more bytes after a bare-LF head).
func CheckResponseHead(raw []byte, upgradeAsked bool) error {
	i := bytes.IndexByte(raw, '\n') // the end of the status line
	status, ok := statusLine(raw[:max(i, 0)])
	switch {
	case !ok:
		return reject(http.StatusBadGateway, "backend answer: malformed status line %q: want HTTP/1.1 or HTTP/1.0, a status 100-599 and CRLF", truncate(raw[:max(i, 0)]))
	case status == http.StatusSwitchingProtocols && !upgradeAsked:
		return reject(http.StatusBadGateway, "backend switched protocols (101) though the request asked for no upgrade")
	}
	if err := checkFields(raw[i+1:], 0, http.StatusBadGateway); err != nil {
		err.(*Rejection).Reason = "backend answer: " + err.(*Rejection).Reason
		return err
	}
	return nil
}

// statusLine parses "HTTP/1.x SSS reason\r" (the line without its LF): the
// version 1.0 or 1.1, a status of three digits from 100 to 599, a space or
// nothing after it, and a CR at the end.
func statusLine(line []byte) (int, bool) {
	if len(line) < 13 || line[len(line)-1] != '\r' ||
		!bytes.HasPrefix(line, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(line, []byte("HTTP/1.0 ")) {
		return 0, false
	}
	code := line[9:12]
	status := 0
	for _, c := range code {
		if c < '0' || c > '9' {
			return 0, false
		}
		status = status*10 + int(c-'0')
	}
	if rest := line[12 : len(line)-1]; len(rest) > 0 && rest[0] != ' ' {
		return 0, false
	}
	return status, status >= 100 && status <= 599
}
