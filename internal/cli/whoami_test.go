package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/authtoken"
	"github.com/modelgate/modelgate/internal/testcert"
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
	var info api.TokenInfo
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

// config validate reads the files a config names as serve would: a key
// that does not match its certificate, a missing CA bundle and an
// override secret others may read are each a problem naming its key.
func TestConfigValidateReadsTheFilesItNames(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "test CA")
	certFile, keyFile := ca.Server(t, "gateway", "127.0.0.1").Files(t, dir, "gateway")
	_, otherKey := ca.Server(t, "other", "127.0.0.1").Files(t, dir, "other")
	secret := filepath.Join(dir, "override.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(secret, 0o644)
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	endpoint := func(caFile, secretFile string) string {
		return fmt.Sprintf(`endpoints:
  - name: fraud
    override: {enabled: true, secret_file: %s}
    deployments:
      - name: blue
        backends: [https://127.0.0.1:9001]
        tls: {ca_file: %s}
    traffic: {blue: 100}
`, secretFile, caFile)
	}
	caFile := testcert.Write(t, dir, "ca.pem", ca.PEM)
	good := write("good.yaml", fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", certFile, keyFile)+endpoint(caFile, testcert.Write(t, dir, "good.secret", []byte(strings.Repeat("g", 40)))))
	bad := write("bad.yaml", fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", certFile, otherKey)+endpoint(filepath.Join(dir, "missing-ca.pem"), secret))
	e := newTestEnv(t)
	e.vars[EnvAdmin] = "127.0.0.1:1"
	if code, out, errOut := e.run("config", "validate", good); code != 0 || out != good+" is valid: 1 endpoint\n" {
		t.Errorf("validate good = %d %q %q", code, out, errOut)
	}
	code, out, errOut := e.run("config", "validate", bad)
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "Error: "+bad+" is invalid: 3 problems\n") {
		t.Fatalf("validate bad = %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"does not match tls.cert_file",
		"endpoints[0].deployments[0].tls: ",
		"missing-ca.pem",
		"endpoints[0].override.secret_file: ",
		"chmod 600 " + secret,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate bad stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// replicas shows the fleet as a table (the answering gateway marked *) and
// as JSON; a gateway without cluster mode lists itself as the leader.
func TestReplicasTable(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	err := printReplicas(&b, []api.Replica{
		{ID: "gw-1-100", AdminURL: "http://10.0.0.1:8081", DataPlane: "10.0.0.1:8080", Version: "devel-abc", StartedAt: now.Add(-time.Hour), LastSeen: now.Add(-2 * time.Second), Leader: true},
		{ID: "gw-2-200", AdminURL: "http://10.0.0.2:8081", DataPlane: "10.0.0.2:8080", Version: "devel-abc", StartedAt: now.Add(-time.Minute), LastSeen: now, Self: true},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := "REPLICA     ADMIN                 DATA PLANE     VERSION    UP      LAST SEEN  ROLE\n" +
		"gw-1-100    http://10.0.0.1:8081  10.0.0.1:8080  devel-abc  1h0m0s  2s ago     leader\n" +
		"gw-2-200 *  http://10.0.0.2:8081  10.0.0.2:8080  devel-abc  1m0s    0s ago     follower\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// A rollout call answered 503 with the leader's URL is sent there once,
// with the same token, but never from https to plain http.
func TestFollowsTheLeaderButNotToPlainHTTP(t *testing.T) {
	var got []string
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id": "fraud-1", "endpoint": "fraud", "phase": "paused"}`))
	}))
	defer leader.Close()
	follower := func(srv func(http.Handler) *httptest.Server) *httptest.Server {
		return srv(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(api.LeaderHeader, leader.URL)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error": "this gateway does not lead the fleet's rollouts: send it to the leader, ` + leader.URL + `"}`))
		}))
	}
	plain := follower(httptest.NewServer)
	defer plain.Close()
	c, err := NewClient(plain.URL, "tok", plain.Client())
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.RolloutAction(t.Context(), "fraud", "pause"); err != nil || r.ID != "fraud-1" {
		t.Fatalf("action through a plain follower = %+v, %v; want the leader's answer", r, err)
	}
	if len(got) != 1 || got[0] != "POST /api/v1/endpoints/fraud/rollout/pause Bearer tok" {
		t.Errorf("the leader got %v", got)
	}
	secure := follower(httptest.NewTLSServer)
	defer secure.Close()
	c, err = NewClient(secure.URL, "tok", secure.Client())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RolloutAction(t.Context(), "fraud", "pause"); err == nil || !strings.Contains(err.Error(), "not sending the token there") {
		t.Errorf("action through an https follower naming a plain http leader = %v", err)
	}
	if len(got) != 1 {
		t.Errorf("the token went to the plain http leader: %v", got)
	}
}
