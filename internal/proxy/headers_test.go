package proxy

import (
	"net/http"
	"testing"
)

func TestHeaderNamesAreCanonical(t *testing.T) {
	// They are set with SetCanonical, which trusts the name's form.
	for _, name := range [][]byte{hdrDeployment, hdrRequestID, hdrForwardedFor, hdrForwardedProto, hdrForwardedHost} {
		if c := http.CanonicalHeaderKey(string(name)); c != string(name) {
			t.Errorf("header name %q is not canonical (%q)", name, c)
		}
	}
}
