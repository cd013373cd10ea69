package dashboardtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/testenv"
)

// tokenEnv is a daemon with both token files (admin.token_file and
// admin.read_only_token_file) in dir, started from a config file so that
// Reload re-reads them.
type tokenEnv struct {
	*env
	d      *daemon.Daemon
	dir    string
	viewer string // the read-only token
}

// startTokenEnv starts the endpoint fraud (blue 100%, green at 0%) on
// echo backends, with an admin token and a read-only token in files.
func startTokenEnv(t *testing.T) *tokenEnv {
	t.Helper()
	dir := t.TempDir()
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	yaml := testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), "")
	const adminBlock = "admin:\n  listen: 127.0.0.1:0\n"
	if !strings.Contains(yaml, adminBlock) {
		t.Fatalf("the test config has no %q block to add the token files to:\n%s", adminBlock, yaml)
	}
	yaml = strings.Replace(yaml, adminBlock, adminBlock+fmt.Sprintf("  token_file: %s\n  read_only_token_file: %s\n",
		filepath.Join(dir, "admin.token"), filepath.Join(dir, "viewer.token")), 1)
	path := filepath.Join(dir, "modelgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemonFile(t, path, testenv.RolloutInterval(100*time.Millisecond))
	e := &tokenEnv{env: &env{Client: testenv.Connect(t, d), t: t}, d: d, dir: dir, viewer: testenv.ReadToken(t, filepath.Join(dir, "viewer.token"))}
	if e.viewer == "" || e.viewer == e.Token {
		t.Fatalf("read-only token %q: want one of its own", e.viewer)
	}
	return e
}

// tokenKind is a predicate: the top bar shows the badge of kind, visible.
func tokenKind(kind string) string {
	return fmt.Sprintf(`(() => { const k = document.getElementById("token-kind");
		return !k.hidden && k.getClientRects().length > 0 && k.dataset.kind === %q && k.textContent === %q; })()`, kind, kind)
}

// rolloutButtons is a predicate: the rollout page shows the rollout
// progressing with exactly the buttons named enabled.
func rolloutButtons(enabled ...string) string {
	want, _ := json.Marshal(append([]string{}, enabled...)) // [] rather than null
	return fmt.Sprintf(`(document.querySelector("#rollout-phase") || {dataset: {}}).dataset.phase === "progressing" &&
		[...document.querySelectorAll("button[data-action]")].every(b => b.disabled === !%s.includes(b.dataset.action))`, want)
}

// The read-only token signs in, says so in the top bar, and finds the
// rollout buttons disabled with the reason; a write it makes anyway shows
// the daemon's 403. The admin token shows no read-only badge and working
// buttons.
func TestDashboardReadOnlyToken(t *testing.T) {
	e := startTokenEnv(t)
	e.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`)
	b := newBrowser(t)

	b.login(e.Admin, e.viewer)
	b.wait("the read-only badge", tokenKind("read-only"), 10*time.Second)
	if title := js[string](b, `document.getElementById("token-kind").title`); title != "this token may only read; pausing, resuming, promoting or aborting a rollout needs the admin token" {
		t.Errorf("the read-only badge's title = %q, want it to say what the token may not do", title)
	}
	if js[bool](b, `!document.getElementById("token-warning").hidden`) {
		t.Error("a replacement warning shown for a token that was never replaced")
	}

	b.goTo("#/endpoints/fraud/rollout")
	b.wait("the rollout with every button disabled", rolloutButtons(), 10*time.Second)
	if !js[bool](b, `[...document.querySelectorAll("button[data-action]")].every(b => b.title.startsWith("The read-only token may only read: " + b.dataset.action + " changes the gateway") && b.title.includes("admin token (admin.token_file)"))`) {
		t.Errorf("the disabled buttons' titles = %v, want each to say the read-only token may not and the admin token may",
			js[[]string](b, `[...document.querySelectorAll("button[data-action]")].map(b => b.title)`))
	}
	if !js[bool](b, `(n => !n.hidden && n.getClientRects().length > 0 && n.textContent.includes("needs the admin token"))(document.getElementById("read-only-note"))`) {
		t.Error("no note under the disabled buttons saying why")
	}

	// A write made anyway (the button forced on) is refused by the daemon,
	// whose words are shown, and changes nothing.
	b.do("press a forced pause", chromedp.Evaluate[chromedp.Void](
		`(p => { p.disabled = false; p.click(); })(document.querySelector('button[data-action="pause"]'))`))
	b.wait("the daemon's refusal", `(document.getElementById("action-result") || {}).className === "error"`, 10*time.Second)
	if got := js[string](b, `document.getElementById("action-result").textContent`); !strings.HasPrefix(got,
		"pause refused: the read-only token may only read: POST /api/v1/endpoints/fraud/rollout/pause changes the gateway") || !strings.Contains(got, "admin token") {
		t.Errorf("after a refused pause the page says %q, want the daemon's 403 message", got)
	}
	b.wait("the buttons disabled again", rolloutButtons(), 10*time.Second)
	if js[bool](b, `!document.getElementById("login").hidden`) {
		t.Error("a 403 signed the page out")
	}
	if r := e.Rollout("fraud"); r.Phase != "progressing" {
		t.Errorf("after the read-only token's pause the rollout is %s, want progressing", r.Phase)
	}

	// The admin token: no read-only badge, the buttons work.
	b.do("log out", chromedp.Click(chromedp.CSS("#logout")))
	b.wait("the login form", `!document.getElementById("login").hidden && document.getElementById("token-kind").hidden`, 5*time.Second)
	b.login(e.Admin, e.Token)
	b.wait("the admin badge", tokenKind("admin"), 10*time.Second)
	if js[bool](b, `document.querySelector(".badge.read-only") !== null || !document.getElementById("token-warning").hidden`) {
		t.Error("a read-only badge or a replacement warning with the admin token")
	}
	b.goTo("#/endpoints/fraud/rollout")
	b.wait("the rollout with its buttons enabled", rolloutButtons("pause", "promote", "promote-full", "abort"), 10*time.Second)
	if js[bool](b, `[...document.querySelectorAll("button[data-action]")].some(b => b.title !== "") || !document.getElementById("read-only-note").hidden`) {
		t.Error("the admin token's buttons still say the read-only token may not")
	}
}

// A token replaced on the daemon while the tab holds it is accepted for
// its overlap: the page says until when (local time) and to sign in with
// the new one, at once on signing in with it too; the new one shows no
// warning.
func TestDashboardReplacedTokenWarning(t *testing.T) {
	e := startTokenEnv(t)
	b := newBrowser(t)
	b.login(e.Admin, e.Token)
	b.wait("the overview", `document.querySelector('[data-endpoint="fraud"]') !== null`, 10*time.Second)
	b.wait("the admin badge", tokenKind("admin"), 5*time.Second)

	oldToken, newToken := e.Token, strings.Repeat("c3", 20)
	if err := os.WriteFile(filepath.Join(e.dir, "admin.token"), []byte(newToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	status, body := e.APIToken(oldToken, "GET", "/api/v1/token", nil)
	var info api.TokenInfo
	if err := json.Unmarshal(body, &info); status != http.StatusOK || err != nil || info.ValidUntil == nil {
		t.Fatalf("GET /api/v1/token with the replaced token = %d %s, want it valid until a time", status, body)
	}
	// The page's local time for it, as the browser writes it.
	until := js[string](b, fmt.Sprintf(`new Date(Date.parse(%q)).toLocaleString()`, info.ValidUntil.Format(time.RFC3339)))
	want := "This token was replaced on the daemon and stops working at " + until + "; sign in with the new one."
	warning := fmt.Sprintf(`(w => !w.hidden && w.getClientRects().length > 0 && w.textContent === %q)(document.getElementById("token-warning"))`, want)

	// The next call of the open tab carries the Warning.
	b.goTo("#/endpoints/fraud")
	b.wait("the replacement warning", warning, 10*time.Second)

	b.do("log out", chromedp.Click(chromedp.CSS("#logout")))
	b.wait("the login form without the warning", `!document.getElementById("login").hidden && document.getElementById("token-warning").hidden`, 5*time.Second)
	b.login(e.Admin, oldToken)
	b.wait("the replacement warning on signing in", warning+` && `+tokenKind("admin"), 10*time.Second)

	b.do("log out", chromedp.Click(chromedp.CSS("#logout")))
	b.wait("the login form", `!document.getElementById("login").hidden`, 5*time.Second)
	b.login(e.Admin, newToken)
	b.wait("the overview with the new token", `document.querySelector('[data-endpoint="fraud"]') !== null && `+tokenKind("admin"), 10*time.Second)
	if js[bool](b, `!document.getElementById("token-warning").hidden`) {
		t.Error("the replacement warning shown for the new token")
	}
}
