package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/testenv"
)

// tokenDaemon starts a daemon from a config file in dir with both token
// files and a webhook holding a secret, and returns it with its config's
// path.
func tokenDaemon(t *testing.T, dir string, logs *syncBuffer) (*daemon.Daemon, string) {
	t.Helper()
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	path := filepath.Join(dir, "modelgate.yaml")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token_file: %[1]s/admin.token
  read_only_token_file: %[1]s/viewer.token
  token_overlap: 1h
state:
  path: %[1]s/state.db
endpoints:
  - name: fraud
    deployments:
      - {name: blue, backends: [%[2]s]}
      - {name: green, backends: [%[3]s]}
    traffic: {blue: 100}
    webhooks:
      - {url: "https://hooks.example.com/services/T0/B0/PATHSECRET", secret: hmac-signing-key}
    rollout:
      confirm_promotion: {url: "https://confirm.example.com/hooks/CONFIRMPATH", secret: confirm-signing-key}
`, dir, blue.URL(), green.URL())
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemonFile(t, path, func(o *daemon.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	return d, path
}

// The read-only token on every route of the admin API, served by the real
// daemon (rollouts, shadows, series and the state backup included): every
// read answers 200 (the state backup, which holds webhook secrets, 403),
// every write 403 with what to use instead, and nothing changes.
func TestReadOnlyTokenOnEveryRoute(t *testing.T) {
	dir := t.TempDir()
	d, _ := tokenDaemon(t, dir, &syncBuffer{})
	c := testenv.Connect(t, d)
	viewer := testenv.ReadToken(t, filepath.Join(dir, "viewer.token"))
	if fi, err := os.Stat(filepath.Join(dir, "viewer.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("read-only token file created with %v, %v; want mode 0600", fi, err)
	}
	c.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`) // so that GET .../rollout has one to show

	state := func() string {
		var b strings.Builder
		for _, p := range []string{"/api/v1/endpoints", "/api/v1/events", "/api/v1/endpoints/fraud/rollouts"} {
			_, body := c.API("GET", p, nil)
			b.Write(body)
		}
		return b.String()
	}
	before := state()
	for _, pattern := range admin.APIRoutes() {
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{ep}", "fraud", "{dep}", "green", "{action}", "pause").Replace(path)
		t.Run(method+" "+path, func(t *testing.T) {
			if path == "/api/v1/events/stream" {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, method, c.Admin+path, nil)
				req.Header.Set("Authorization", "Bearer "+viewer)
				resp, err := c.HTTP.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get(api.TokenKindHeader) != "read-only" {
					t.Fatalf("event stream with the read-only token = %d", resp.StatusCode)
				}
				return
			}
			status, body := c.APIToken(viewer, method, path, "{}")
			var e api.ErrorBody
			_ = json.Unmarshal(body, &e)
			switch {
			case method != "GET" || path == "/api/v1/state/backup":
				if status != http.StatusForbidden || !strings.Contains(e.Error, "read-only token may") || !strings.Contains(e.Error, "admin token (admin.token_file)") {
					t.Errorf("%s %s with the read-only token = %d %s; want 403 naming the admin token", method, path, status, body)
				}
			case status != http.StatusOK:
				t.Errorf("%s %s with the read-only token = %d %s; want 200", method, path, status, body)
			}
		})
	}
	if after := state(); after != before {
		t.Errorf("the read-only token changed the state:\nbefore %s\nafter  %s", before, after)
	}
	secrets := []string{"PATHSECRET", "hmac-signing-key", "CONFIRMPATH", "confirm-signing-key"}
	for _, path := range []string{"/api/v1/endpoints", "/api/v1/endpoints/fraud", "/api/v1/endpoints/fraud/rollout", "/api/v1/endpoints/fraud/rollouts", "/api/v1/events"} {
		_, body := c.APIToken(viewer, "GET", path, nil)
		for _, secret := range secrets {
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("GET %s with the read-only token reads %s", path, secret)
			}
		}
	}
	_, body := c.APIToken(viewer, "GET", "/api/v1/endpoints/fraud", nil)
	if !bytes.Contains(body, []byte(`"https://hooks.example.com"`)) || !bytes.Contains(body, []byte(`"https://confirm.example.com"`)) {
		t.Errorf("the read-only token does not see which hosts the webhooks go to: %s", body)
	}
	// Events hold no secret for any token: webhooks receive them too.
	if _, body := c.API("GET", "/api/v1/events", nil); bytes.Contains(body, []byte("signing-key")) || bytes.Contains(body, []byte("PATH")) {
		t.Errorf("the event log holds a webhook's secret or path: %s", body)
	}
	if _, body := c.API("GET", "/api/v1/endpoints/fraud", nil); !bytes.Contains(body, []byte("hmac-signing-key")) {
		t.Errorf("the admin token does not read the webhook it configured: %s", body)
	}
}

// Tokens rotate on reload (SIGHUP): the new one is accepted at once, the
// old one for admin.token_overlap with a Warning, and a token file that
// is refused leaves every token as it was.
func TestTokenRotationOnReload(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	d, _ := tokenDaemon(t, dir, logs)
	c := testenv.Connect(t, d)
	adminPath, viewerPath := filepath.Join(dir, "admin.token"), filepath.Join(dir, "viewer.token")
	oldAdmin, oldViewer := testenv.ReadToken(t, adminPath), testenv.ReadToken(t, viewerPath)
	newAdmin, newViewer := strings.Repeat("a1", 20), strings.Repeat("b2", 20)
	for path, tok := range map[string]string{adminPath: newAdmin, viewerPath: newViewer} {
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if status, _ := c.APIToken(newAdmin, "GET", "/api/v1/token", nil); status != http.StatusUnauthorized {
		t.Fatalf("the new token was accepted before the reload: %d", status)
	}
	if _, err := d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for _, tc := range []struct {
		token, kind string
		replaced    bool
	}{{newAdmin, "admin", false}, {oldAdmin, "admin", true}, {newViewer, "read-only", false}, {oldViewer, "read-only", true}} {
		req, _ := http.NewRequest("GET", c.Admin+"/api/v1/token", nil)
		req.Header.Set("Authorization", "Bearer "+tc.token)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var info api.TokenInfo
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || info.Kind != tc.kind || (info.ValidUntil != nil) != tc.replaced {
			t.Errorf("after the rotation, token %.6s… = %d %+v, want %s (replaced: %v)", tc.token, resp.StatusCode, info, tc.kind, tc.replaced)
		}
		if w := resp.Header.Get("Warning"); tc.replaced != strings.Contains(w, "replaced") {
			t.Errorf("token %.6s…: Warning %q (replaced: %v)", tc.token, w, tc.replaced)
		}
		if tc.replaced {
			if until := time.Until(*info.ValidUntil); until < 59*time.Minute || until > time.Hour {
				t.Errorf("the replaced token is accepted for %v more, want the 1h overlap", until)
			}
		}
	}
	if !strings.Contains(logs.String(), "token replaced; the old one is accepted until the overlap ends") {
		t.Errorf("the rotation is not logged:\n%s", logs)
	}

	// The read-only token written as the admin token is refused: its
	// holders would gain every right.
	for path, tok := range map[string]string{adminPath: newViewer, viewerPath: strings.Repeat("c3", 20)} {
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "accepted now as the read-only one") {
		t.Fatalf("Reload with the read-only token in the admin file = %v, want it refused", err)
	}
	if status, _ := c.APIToken(newViewer, "PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 100}); status != http.StatusForbidden {
		t.Errorf("after the refused swap the read-only token writes: %d", status)
	}
	for path, tok := range map[string]string{adminPath: newAdmin, viewerPath: newViewer} {
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A token file others may read is refused, and nothing changes.
	if err := os.Chmod(viewerPath, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := d.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), "the tokens are unchanged") {
		t.Fatalf("Reload with a token file open to others = %v, want it refused with the fix", err)
	}
	for _, tok := range []string{newAdmin, oldAdmin, newViewer, oldViewer} {
		if status, body := c.APIToken(tok, "GET", "/api/v1/endpoints", nil); status != http.StatusOK {
			t.Errorf("after a refused reload, token %.6s… = %d %s", tok, status, body)
		}
	}
}
