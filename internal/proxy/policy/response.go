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
// is a bad gateway (502): the backend connection is not reused.
func CheckResponseHead(raw []byte, status int, upgradeAsked bool) error {
	if status == http.StatusSwitchingProtocols && !upgradeAsked {
		return reject(http.StatusBadGateway, "backend switched protocols (101) though the request asked for no upgrade")
	}
	i := bytes.IndexByte(raw, '\n') // the status line
	if i < 0 {
		return reject(http.StatusBadGateway, "backend answer has no status line")
	}
	if err := checkFields(raw[i+1:], 0, http.StatusBadGateway); err != nil {
		err.(*Rejection).Reason = "backend answer: " + err.(*Rejection).Reason
		return err
	}
	return nil
}
