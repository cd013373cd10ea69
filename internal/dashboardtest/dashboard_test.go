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
	checkDeadline(t, b, e)
	checkButtons(t, b, "progressing", []string{"pause", "promote", "promote-full", "abort"})
	b.screenshot("rollout")

	// While the rollout runs, the overview names its canary and stable.
	b.goTo("#/")
	b.wait("the rollout's roles on the overview", `(row => row("green") === " canary" && row("blue") === " stable")(d =>
		document.querySelector('[data-endpoint="fraud"] tr[data-deployment="' + d + '"] [data-field="role"]')?.textContent)`, 10*time.Second)
	b.goTo("#/endpoints/fraud/rollout")
	b.wait("the rollout page again", `document.querySelector('button[data-action="abort"]:not(:disabled)') !== null`, 10*time.Second)

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
	aborted := time.Now()

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
	checkButtons(t, b, "aborted", []string{"retry"})
	if got := js[string](b, `document.querySelector("#rollout > div:first-child").textContent`); strings.Contains(got, "null") || strings.Contains(got, "undefined") {
		t.Errorf("the rollout's status shows a null or undefined:\n%s", got)
	}
	if js[bool](b, `document.querySelector("#rollout-deadline") !== null`) {
		t.Error("an aborted rollout still shows a deadline")
	}
	b.screenshot("rollout-aborted")

	// The overview, a moment after the rollback: the measured share is the
	// last seconds' at the split of now, all blue, while the last minute
	// still holds green's half; the ended rollout names no canary.
	b.goTo("#/")
	b.wait("blue's measured 100% since the abort", `(q => q('blue', 'measured') === "100.0%" && q('green', 'measured') === "0.0%")(
		(d, f) => document.querySelector('[data-endpoint="fraud"] tr[data-deployment="' + d + '"] [data-field="' + f + '"]')?.textContent)`, 15*time.Second)
	// Within the window's 10 s of the abort it says since when; on a
	// machine slow enough to get here later, the last 10 s are all since.
	got := js[string](b, `document.querySelector('[data-endpoint="fraud"] [data-field="measured-window"]').textContent`)
	if since := time.Since(aborted); !strings.HasPrefix(got, "measured: since the split changed at ") &&
		!(since > 9*time.Second && strings.HasPrefix(got, "measured: the last 10 s ")) {
		t.Errorf("the measured share's window %s after the abort = %q, want since the split changed", since.Round(time.Millisecond), got)
	}
	var minute struct {
		Deployments map[string]struct {
			Share float64 `json:"share"`
		} `json:"deployments"`
	}
	if status, body := e.API("GET", "/api/v1/endpoints/fraud/metrics?window=1m", nil); status != 200 || json.Unmarshal(body, &minute) != nil {
		t.Fatalf("GET metrics = %d %s", status, body)
	}
	if share := minute.Deployments["green"].Share; share < 0.05 {
		t.Errorf("green's share over the last minute = %v: the test does not show the window matters", share)
	}
	if js[bool](b, `document.querySelector('[data-endpoint="fraud"] [data-field="role"]') !== null`) {
		t.Error("the overview still names a canary or a stable after the rollout ended")
	}

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

// checkDeadline checks the rollout page's progress deadline: when the
// stage pauses without a decision, from the stage's start and the plan's
// (default) 10 minutes.
func checkDeadline(t *testing.T, b *browser, e *env) {
	t.Helper()
	// The wire form, read here field by field.
	var ro struct {
		DeadlineFrom time.Time `json:"deadline_from"`
		Plan         struct {
			ProgressDeadline string `json:"progress_deadline"`
		} `json:"plan"`
	}
	status, body := e.API("GET", "/api/v1/endpoints/fraud/rollout", nil)
	if err := json.Unmarshal(body, &ro); status != 200 || err != nil || ro.DeadlineFrom.IsZero() || ro.Plan.ProgressDeadline != "10m0s" {
		t.Fatalf("GET rollout = %d %s (%v), want a deadline_from and the default 10m progress deadline", status, body, err)
	}
	want := ro.DeadlineFrom.Add(10 * time.Minute)
	b.wait("the deadline", `document.querySelector("#rollout-deadline") !== null`, 5*time.Second)
	text := js[string](b, `document.querySelector("#rollout-deadline").textContent`)
	at, err := time.Parse(time.RFC3339, js[string](b, `document.querySelector("#rollout-deadline").dataset.at`))
	if err != nil || !at.Equal(want.Truncate(time.Millisecond)) || !strings.HasPrefix(text, "without a decision it pauses at ") || !strings.Contains(text, "10m00s from the stage's start") {
		t.Errorf("deadline on screen %q at %v (%v), want it to pause at %v, 10m00s from the stage's start", text, at, err, want)
	}
}

// checkButtons checks the rollout's buttons in phase: exactly enabled are
// enabled; a disabled one keeps no action colour (no fill, a dashed grey
// outline, muted text); no enabled one is filled as a primary action but
// the dangerous ones (red), and promote-full is drawn as a caution.
func checkButtons(t *testing.T, b *browser, phase string, enabled []string) {
	t.Helper()
	list, _ := json.Marshal(enabled)
	var buttons []struct {
		Action, Class, Background, Border, BorderStyle, Color string
		Disabled                                              bool
	}
	raw := js[string](b, `JSON.stringify([...document.querySelectorAll("button[data-action]")].map(b => {
		const st = getComputedStyle(b);
		return {Action: b.dataset.action, Class: b.className, Background: st.backgroundColor, Border: st.borderTopColor,
			BorderStyle: st.borderTopStyle, Color: st.color, Disabled: b.disabled};
	}))`)
	if err := json.Unmarshal([]byte(raw), &buttons); err != nil || len(buttons) != 7 {
		t.Fatalf("buttons %s: %v", raw, err)
	}
	muted := js[string](b, `getComputedStyle(document.querySelector("#stream-state")).color`)
	accent := js[string](b, `getComputedStyle(document.querySelector("#nav a")).color`)
	transparent := "rgba(0, 0, 0, 0)"
	for _, bt := range buttons {
		want := strings.Contains(string(list), `"`+bt.Action+`"`)
		switch {
		case bt.Disabled == want:
			t.Errorf("%s: %s disabled = %v, want enabled only %v", phase, bt.Action, bt.Disabled, enabled)
		case bt.Disabled && (bt.Background != transparent || bt.BorderStyle != "dashed" || bt.Color != muted):
			t.Errorf("%s: disabled %s drawn with background %s, border %s %s, text %s; want no fill, a dashed outline and muted text (%s)",
				phase, bt.Action, bt.Background, bt.BorderStyle, bt.Border, bt.Color, muted)
		case !bt.Disabled && bt.Class != "danger" && bt.Background != transparent:
			t.Errorf("%s: %s is filled (%s) like a primary action", phase, bt.Action, bt.Background)
		case !bt.Disabled && bt.Action == "promote-full" && (bt.Class != "caution" || bt.Color == accent):
			t.Errorf("%s: promote-full drawn as %q in %s, want a caution, not the accent %s", phase, bt.Class, bt.Color, accent)
		case !bt.Disabled && bt.Class == "danger" && bt.Background == transparent:
			t.Errorf("%s: %s, dangerous, is not filled", phase, bt.Action)
		}
	}
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

// TestDashboardShadowReport starts a rollout of green whose shadow phase
// mirrors half of fraud's requests to green, whose answers differ from
// blue's now and then, and needs a match rate of 80% over more copies than
// the test sends, and reads the shadow page. A daemon without the shadow
// report (GET .../shadow answers 404) must show "No shadow data" instead.
func TestDashboardShadowReport(t *testing.T) {
	e := startEnv(t)
	e.StartRollout("fraud", `{"canary": "green", "shadow": {"mirror": 50, "min_compared": 1000000, "min_match_rate": 0.8}}`)
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
	// The shadow phase's threshold: a line across the interval's bar at
	// 80%, and said under it.
	if got := js[string](b, `(el => el ? el.style.left : "none")(document.querySelector('[data-shadow="green"] .ci i.threshold'))`); got != "calc(80% - 1px)" {
		t.Errorf("the threshold line on the match rate's bar at %q, want at 80%%", got)
	}
	if got := js[string](b, `(el => el ? el.textContent : "none")(document.querySelector('[data-shadow="green"] [data-field="threshold"]'))`); got != "threshold: the shadow phase of fraud-1 needs a match rate of 80.00% or more over 1,000,000 compared copies" {
		t.Errorf("the threshold said = %q", got)
	}
	live := js[string](b, `document.querySelector('[data-shadow="green"] .mismatch .side div:first-child pre').textContent`)
	shadow := js[string](b, `document.querySelector('[data-shadow="green"] .mismatch .side div:last-child pre').textContent`)
	if !strings.Contains(live, "0.12") || !strings.Contains(shadow, "0.57") {
		t.Errorf("mismatch sample: live %q, shadow %q; want 0.12 vs 0.57", live, shadow)
	}
	// The request that gave the mismatch, above the answers.
	if got, want := js[string](b, `(el => el ? el.textContent : "none")(document.querySelector('[data-shadow="green"] .mismatch .request pre'))`), `POST /predict {"instances":[[1,2,3]]}`; got != want {
		t.Errorf("the mismatch's request on screen = %q, want %q", got, want)
	}
	b.screenshot("shadow")
	b.viewport(390, 844, true)
	b.wait("the shadow page at phone width", `document.querySelector('[data-shadow="green"] .mismatch') !== null`, 10*time.Second)
	if w := js[float64](b, `document.documentElement.scrollWidth`); w > 391 {
		t.Errorf("shadow page at phone width is %v px wide, want at most 390", w)
	}
	b.screenshot("shadow-phone")
}
