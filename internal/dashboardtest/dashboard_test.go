package dashboardtest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// rolloutPlan moves on its own: a 20% stage that passes after a 1.5 s bake
// and 20 canary requests on threshold gates, then a 50% stage that bakes
// for 10 minutes, long enough to abort it by hand.
const rolloutPlan = `{"canary": "green",
  "stages": [{"weight": 20, "bake": "1500ms"}, {"weight": 50, "bake": "10m"}, 100],
  "min_requests": 20,
  "gates": [{"type": "error_rate", "max": 0.5}, {"type": "latency", "quantile": 0.99, "max": 2000}]}`

func TestDashboardRolloutLiveAndAbort(t *testing.T) {
	e := startEnv(t)
	e.load(3)
	b := newBrowser(t)

	b.login(e.Admin, e.Token)
	b.wait("the overview with measured traffic",
		`(document.querySelector('[data-endpoint="fraud"] [data-deployment="blue"] [data-field="measured"]') || {}).textContent === "100.0%"`, 30*time.Second)
	if got := js[string](b, `sessionStorage.getItem("modelgate.token")`); got != e.Token {
		t.Errorf("sessionStorage token = %q, want the admin token", got)
	}
	b.screenshot("overview")

	var plan any
	json.Unmarshal([]byte(rolloutPlan), &plan)
	if status, body := e.API("POST", "/api/v1/endpoints/fraud/rollouts", plan); status != 201 {
		t.Fatalf("start rollout = %d %s", status, body)
	}

	b.goTo("#/endpoints/fraud/rollout")
	b.wait("the rollout progressing", `(document.querySelector("#rollout-phase") || {dataset: {}}).dataset.phase === "progressing"`, 20*time.Second)
	// A marker that only survives if the page is never reloaded.
	b.do("mark the page", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`))
	first := js[string](b, `document.querySelector("#rollout-stage").textContent`)
	b.wait("stage 2 on screen", `(document.querySelector("#rollout-stage") || {}).textContent === "stage 2/3 at 50%"`, 60*time.Second)
	if !strings.Contains(first, "stage 1/3 at 20%") && first != "stage 2/3 at 50%" {
		t.Errorf("first stage on screen = %q, want stage 1/3 at 20%%", first)
	}
	if !js[bool](b, `window.__sameDocument === true`) {
		t.Fatal("the page was reloaded; the stage must change on screen without a reload")
	}
	b.wait("the stage events in the live log", `document.querySelectorAll('#event-log li[data-type="rollout.stage"]').length >= 2`, 10*time.Second)
	b.wait("the traffic at 50/50", `document.querySelector("#traffic-now").textContent === "blue 50% · green 50%"`, 10*time.Second)
	b.wait("the gate verdicts", `document.querySelectorAll('#gates tr[data-gate]').length === 2`, 10*time.Second)
	// Plain words first: the rollout says what it waits for, each gate what
	// it found, then the statistics.
	b.wait("the rollout's plain words", `(document.querySelector("#rollout-reason") || {}).textContent.startsWith("waiting: the stage bakes for 10m0s")`, 10*time.Second)
	b.wait("the estimate told at the start", `(document.querySelector("#rollout-estimate") || {}).textContent.startsWith("Expected when it started: about ")`, 10*time.Second)
	b.wait("a gate's plain words", `(document.querySelector('#gates tr[data-gate="error_rate"] .gate-summary') || {}).textContent.startsWith("green's error rate")`, 10*time.Second)
	if got := js[string](b, `document.querySelector('#gates tr[data-gate="error_rate"] .gate-reason').textContent`); !strings.HasPrefix(got, "canary error rate") {
		t.Errorf("the error_rate gate's statistics on screen = %q, want them after its summary", got)
	}
	b.wait("the weights chart", `document.querySelectorAll("svg.chart path[data-series]").length === 2`, 10*time.Second)
	b.screenshot("rollout")

	// Abort asks first; cancelling changes nothing.
	b.do("press abort", chromedp.Click(chromedp.CSS(`button[data-action="abort"]`)))
	b.wait("the confirmation", `document.getElementById("confirm").open`, 5*time.Second)
	b.screenshot("rollout-confirm")
	b.do("cancel", chromedp.Click(chromedp.CSS("#confirm-no")))
	b.wait("the confirmation closed", `!document.getElementById("confirm").open`, 5*time.Second)
	if status, body := e.API("GET", "/api/v1/endpoints/fraud/rollout", nil); status != 200 || !strings.Contains(string(body), `"phase":"progressing"`) {
		t.Fatalf("after cancel: rollout = %d %s, want still progressing", status, body)
	}
	b.do("press abort again", chromedp.Click(chromedp.CSS(`button[data-action="abort"]`)))
	b.wait("the confirmation", `document.getElementById("confirm").open`, 5*time.Second)
	b.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")))

	b.wait("aborted on screen", `(document.querySelector("#rollout-phase") || {dataset: {}}).dataset.phase === "aborted"`, 10*time.Second)
	b.wait("all traffic to blue on screen", `document.querySelector("#traffic-now").textContent === "blue 100%"`, 10*time.Second)
	b.wait("the abort in the live log", `document.querySelector('#event-log li[data-type="rollout.aborted"]') !== null`, 10*time.Second)
	if !js[bool](b, `window.__sameDocument === true`) {
		t.Fatal("the page was reloaded")
	}
	if status, body := e.API("GET", "/api/v1/endpoints/fraud/traffic", nil); status != 200 || strings.TrimSpace(string(body)) != `{"blue":100}` {
		t.Errorf("GET traffic after abort = %d %s, want {\"blue\":100}", status, body)
	}
	if status, body := e.API("GET", "/api/v1/endpoints/fraud/rollout", nil); status != 200 || !strings.Contains(string(body), `"phase":"aborted"`) {
		t.Errorf("GET rollout after abort = %d %s, want aborted", status, body)
	}
	for i := range 30 {
		if dep := e.predict(); dep != "blue" {
			t.Fatalf("request %d after abort answered by %q, want blue", i, dep)
		}
	}
	if !js[bool](b, `[...document.querySelectorAll("button[data-action]")].every(b => b.disabled === !["retry"].includes(b.dataset.action))`) {
		t.Error("after the abort only retry should be enabled")
	}
	b.screenshot("rollout-aborted")

	b.goTo("#/endpoints/fraud")
	b.wait("the charts", `document.querySelectorAll("#charts svg.chart").length === 7`, 20*time.Second)
	b.wait("green's requests in its chart", `[...document.querySelectorAll('#charts [data-deployment="green"] path[data-series="green"]')].some(p => p.getAttribute("d").length > 0)`, 10*time.Second)
	// The daemon is seconds old: show the last 2 minutes, at 1-s steps.
	b.do("last 2 minutes", chromedp.Click(chromedp.CSS(`button[data-range="2m"]`)))
	b.wait("2-minute charts", `document.querySelector('#charts[data-window="2m"]') !== null && document.querySelectorAll("#charts svg.chart").length === 7`, 10*time.Second)
	b.screenshot("endpoint")

	b.goTo("#/endpoints/fraud/shadow")
	b.wait("the shadow page", `document.querySelector("#no-shadow, [data-shadow]") !== null`, 10*time.Second)

	b.viewport(390, 844, true)
	for _, page := range []struct{ name, hash, ready string }{
		{"overview", "#/", `document.querySelector('[data-endpoint="fraud"] table') !== null`},
		{"endpoint", "#/endpoints/fraud", `document.querySelectorAll("#charts svg.chart").length === 7`},
		{"rollout", "#/endpoints/fraud/rollout", `document.querySelector('#event-log li[data-type="rollout.aborted"]') !== null && document.querySelector("#gates, #rollout") !== null`},
	} {
		b.goTo(page.hash)
		b.wait(page.name+" at phone width", page.ready, 20*time.Second)
		// Nothing may be wider than the phone: tables scroll in their box.
		if w := js[float64](b, `document.documentElement.scrollWidth`); w > 391 {
			t.Errorf("%s at phone width is %v px wide, want at most 390", page.name, w)
		}
		b.screenshot(page.name + "-phone")
	}

	checkRequests(t, b, e)
}

// checkRequests checks every request the page made: all to the admin
// origin, none with the token in its URL, every API call with the bearer
// header, and no EventSource.
func checkRequests(t *testing.T, b *browser, e *env) {
	t.Helper()
	reqs := b.requestsSeen()
	if len(reqs) == 0 {
		t.Fatal("no requests recorded")
	}
	sawStream := false
	for _, r := range reqs {
		if strings.HasPrefix(r.URL, "data:") {
			continue
		}
		if !strings.HasPrefix(r.URL, e.Admin+"/") {
			t.Errorf("request to %s, outside the admin origin %s", r.URL, e.Admin)
		}
		if strings.Contains(r.URL, e.Token) {
			t.Errorf("token in the URL %s", r.URL)
		}
		if strings.Contains(r.URL, "/api/v1/") {
			if got, _ := r.Headers["Authorization"].(string); got != "Bearer "+e.Token {
				t.Errorf("%s %s sent Authorization %q, want the bearer token", r.Method, r.URL, got)
			}
		}
		if strings.Contains(r.URL, "/api/v1/events/stream") {
			sawStream = true
			if accept, _ := r.Headers["Accept"].(string); accept != "text/event-stream" {
				t.Errorf("stream request Accept = %q", accept)
			}
		}
	}
	if !sawStream {
		t.Error("the rollout page never opened the event stream")
	}
}

func TestDashboardWrongTokenShowsNoData(t *testing.T) {
	e := startEnv(t)
	b := newBrowser(t)

	b.do("open the dashboard", chromedp.Navigate(e.Admin+"/"))
	b.do("login form", chromedp.WaitVisible(chromedp.CSS("#token")))
	b.screenshot("login")
	b.login(e.Admin, "not-the-token")
	b.wait("the error", `!document.getElementById("login-error").hidden`, 10*time.Second)
	if msg := js[string](b, `document.getElementById("login-error").textContent`); !strings.Contains(msg, "refused") || !strings.Contains(msg, "invalid bearer token") {
		t.Errorf("error shown = %q, want it to say the token was refused", msg)
	}
	if n := js[int](b, `document.getElementById("app").childElementCount`); n != 0 {
		t.Errorf("the app shows %d elements with a wrong token, want none", n)
	}
	if js[bool](b, `document.body.textContent.includes("fraud") || document.body.textContent.includes("blue")`) {
		t.Error("endpoint data on the page with a wrong token")
	}
	if js[bool](b, `sessionStorage.getItem("modelgate.token") !== null`) {
		t.Error("a refused token was stored")
	}
	if js[bool](b, `!document.getElementById("nav").hidden || !document.getElementById("logout").hidden`) {
		t.Error("navigation shown without a valid token")
	}
	b.screenshot("login-error")

	// Hand-made URLs need the token too: no data without it.
	b.goTo("#/endpoints/fraud/rollout")
	b.do("wait", chromedp.Sleep(500*time.Millisecond))
	if n := js[int](b, `document.getElementById("app").childElementCount`); n != 0 || !js[bool](b, `!document.getElementById("login").hidden`) {
		t.Errorf("a page route without a token shows %d elements (want 0 and the login form)", n)
	}

	// The right token signs in; logging out forgets it and clears the page.
	b.login(e.Admin, e.Token)
	b.wait("data after signing in", `document.querySelector('[data-endpoint="fraud"]') !== null`, 20*time.Second)
	b.do("log out", chromedp.Click(chromedp.CSS("#logout")))
	b.wait("the login form again", `!document.getElementById("login").hidden`, 5*time.Second)
	if js[bool](b, `sessionStorage.getItem("modelgate.token") !== null || document.getElementById("app").childElementCount !== 0`) {
		t.Error("after logout the token or the data is still there")
	}

	b.viewport(390, 844, true)
	b.login(e.Admin, "still-wrong")
	b.wait("the error at phone width", `!document.getElementById("login-error").hidden`, 10*time.Second)
	b.screenshot("login-error-phone")
}

// TestDashboardShadowReport mirrors half of fraud's requests to green, whose
// answers differ from blue's now and then, and reads the shadow page. A
// daemon without the shadow report (GET .../shadow answers 404) must show
// "No shadow data" instead.
func TestDashboardShadowReport(t *testing.T) {
	e := startEnv(t)
	if status, body := e.API("PUT", "/api/v1/endpoints/fraud/mirror", map[string]int{"green": 50}); status != 200 {
		t.Fatalf("PUT mirror = %d %s", status, body)
	}
	e.load(2)
	b := newBrowser(t)
	b.login(e.Admin, e.Token)
	b.wait("the overview", `document.querySelector('[data-endpoint="fraud"]') !== null`, 20*time.Second)
	b.goTo("#/endpoints/fraud/shadow")

	if status, _ := e.API("GET", "/api/v1/endpoints/fraud/shadow", nil); status == 404 {
		b.wait("no shadow data", `(document.querySelector("#no-shadow") || {textContent: ""}).textContent.startsWith("No shadow data")`, 10*time.Second)
		b.screenshot("shadow-none")
		return
	}
	b.wait("green's mismatches side by side", `document.querySelectorAll('[data-shadow="green"] .mismatch .side pre').length >= 2`, 30*time.Second)
	rate := js[string](b, `document.querySelector('[data-shadow="green"] #match-rate').textContent`)
	if !strings.HasSuffix(rate, "%") || rate == "100.00%" {
		t.Errorf("match rate on screen = %q, want a percentage below 100%%", rate)
	}
	if !js[bool](b, `/95% interval \d/.test(document.querySelector('[data-shadow="green"]').textContent)`) {
		t.Error("no 95% interval on screen")
	}
	live := js[string](b, `document.querySelector('[data-shadow="green"] .mismatch .side div:first-child pre').textContent`)
	shadow := js[string](b, `document.querySelector('[data-shadow="green"] .mismatch .side div:last-child pre').textContent`)
	if !strings.Contains(live, "0.12") || !strings.Contains(shadow, "0.57") {
		t.Errorf("mismatch sample: live %q, shadow %q; want 0.12 vs 0.57", live, shadow)
	}
	b.screenshot("shadow")
	b.viewport(390, 844, true)
	b.wait("the shadow page at phone width", `document.querySelector('[data-shadow="green"] .mismatch') !== null`, 10*time.Second)
	if w := js[float64](b, `document.documentElement.scrollWidth`); w > 391 {
		t.Errorf("shadow page at phone width is %v px wide, want at most 390", w)
	}
	b.screenshot("shadow-phone")
}
