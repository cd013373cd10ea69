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
	if !upgradeAsked && bytes.HasPrefix(raw, []byte("HTTP/1.")) && bytes.HasPrefix(raw[min(len(raw), 8):], []byte(" 101")) {
		return reject(http.StatusBadGateway, "backend switched protocols (101) though the request asked for no upgrade")
	}
	if err := checkFields(raw[i+1:], 0, http.StatusBadGateway); err != nil {
		err.(*Rejection).Reason = "backend answer: " + err.(*Rejection).Reason
		return err
	}
	return nil
}
