package cli

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/authtoken"
)

// whoami says which kind of token the CLI holds; a write with the
// read-only token fails with the daemon's reason; a replaced token still
// in its overlap works, and every command says on standard error until
// when.
func TestWhoamiAndReadOnlyToken(t *testing.T) {
	tokens := authtoken.New(time.Hour, nil)
	tokens.Put(authtoken.Admin, testToken)
	tokens.Put(authtoken.ReadOnly, "viewer-token")
	e := newTestEnv(t)
	srv := httptest.NewServer(admin.New(admin.Options{Backend: admintest.NewBackend(admintest.Fraud()), Tokens: tokens}))
	t.Cleanup(srv.Close)
	e.srv, e.vars[EnvAdmin] = srv, srv.URL

	code, out, errOut := e.run("whoami")
	if code != 0 || out != "admin token (from "+EnvToken+"): may read and change everything\n" || errOut != "" {
		t.Errorf("whoami with the admin token = %d %q %q", code, out, errOut)
	}
	e.vars[EnvToken] = "viewer-token"
	code, out, _ = e.run("whoami")
	if code != 0 || !strings.HasPrefix(out, "read-only token (from "+EnvToken+"): may read") {
		t.Errorf("whoami with the read-only token = %d %q", code, out)
	}
	code, out, _ = e.run("whoami", "-o", "json")
	var info admin.TokenInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Kind != "read-only" || info.ValidUntil != nil {
		t.Errorf("whoami -o json = %d %q", code, out)
	}
	if code, _, errOut := e.run("traffic", "get", "fraud"); code != 0 || errOut != "" {
		t.Errorf("a read with the read-only token = %d %q", code, errOut)
	}
	code, _, errOut = e.run("traffic", "set", "fraud", "blue=95", "green=5")
	if code != 1 || !strings.Contains(errOut, "the read-only token may only read: PUT /api/v1/endpoints/fraud/traffic changes the gateway and needs the admin token (admin.token_file)") {
		t.Errorf("a write with the read-only token = %d %q", code, errOut)
	}

	tokens.Put(authtoken.ReadOnly, "viewer-token-2")
	code, out, errOut = e.run("whoami")
	if code != 0 || !strings.Contains(out, "it was replaced on the daemon and is accepted until ") ||
		strings.Count(errOut, "Warning: this read-only token was replaced and is accepted until ") != 1 {
		t.Errorf("whoami with a replaced token = %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}
