package dashboardtest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/testenv"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "also write the screenshots to docs/img/ (the README shows them)")

// docsImg is where -update-screenshots writes, relative to this package.
const docsImg = "../../docs/img"

// env is a running daemon with two real backends, and a client for it
// whose Admin serves the dashboard and the API.
type env struct {
	*testenv.Client
	t *testing.T
}

// startEnv starts blue and green model servers and the real daemon on :0
// ports, with the endpoint fraud (blue 100%) and rollouts looked at every
// 100 ms.
func startEnv(t *testing.T) *env {
	t.Helper()
	// A model takes a little time, which the charts show; green disagrees
	// with blue now and then: shadow mismatches.
	blue := testenv.NewModel(t, testenv.Model{Answer: `{"predictions":[0.12]}`, Delay: 2 * time.Millisecond})
	green := testenv.NewModel(t, testenv.Model{Answer: `{"predictions":[0.12]}`, Delay: 4 * time.Millisecond,
		DisagreeEvery: 8, Disagree: `{"predictions":[0.57]}`})
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""),
		testenv.RolloutInterval(100*time.Millisecond))
	e := &env{Client: testenv.Connect(t, d), t: t}
	if status, _ := e.API("GET", "/api/v1/endpoints/fraud/series?window=10s&step=1s", nil); status == http.StatusNotFound {
		// The daemon does not pass its control service as admin.Options.Series
		// yet: serve the same admin API, over the same control service and
		// rollout controller, with the series route; the shadow report,
		// which needs the daemon's shadow manager, is the daemon's own.
		mux := http.NewServeMux()
		mux.Handle("/", admin.New(admin.Options{Backend: d.Control(), Rollouts: d.Rollouts(), Series: d.Control(),
			Token: d.Token(), Gatherer: prometheus.NewRegistry()}))
		mux.Handle("GET /api/v1/endpoints/{ep}/shadow", httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: d.AdminAddr()}))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		e.Admin = srv.URL
	}
	return e
}

// predict sends one request through the data plane and returns the
// deployment that answered.
func (e *env) predict() string {
	_, dep, _ := e.Predict("/fraud/predict", nil)
	return dep
}

// load sends requests through the data plane from a few workers, about
// 100 a second each at most, until the test ends (bounded in time too).
func (e *env) load(workers int) {
	l := testenv.StartLoad(e.t, workers, 10*time.Millisecond, func() { e.predict() })
	time.AfterFunc(3*time.Minute, l.Stop)
}

// browser is one headless Chromium tab.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string // where screenshots go

	mu       sync.Mutex
	requests []*network.Request
	console  []string
}

// chromiumPath is Debian's Chromium unless MODELGATE_CHROMIUM names another.
func chromiumPath() string {
	if p := os.Getenv("MODELGATE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// newBrowser starts headless Chromium with a fresh profile, at desktop size.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath()),
		chromedp.NoSandbox, // the tests run as root in CI
		chromedp.DisableGPU,
		// This machine's network is closed: no background or update traffic.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 4*time.Minute)
	b := &browser{t: t, ctx: ctx, shots: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			t.Logf("browser console:\n%s", strings.Join(b.console, "\n"))
			b.mu.Unlock()
			if png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); err == nil {
				p := filepath.Join(b.shots, "failure.png")
				os.WriteFile(p, png, 0o644)
				t.Logf("page at failure: %s", p)
			}
		}
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Listen(ctx, b.event); err != nil {
		t.Fatalf("start Chromium (%s): %v", chromiumPath(), err)
	}
	b.viewport(1280, 900, false)
	return b
}

// event records every request the page makes and what it logs.
func (b *browser) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request)
	case network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request)
	default:
		if s := fmt.Sprintf("%T", ev); strings.Contains(s, "ConsoleAPICalled") || strings.Contains(s, "ExceptionThrown") {
			raw, _ := json.Marshal(ev)
			b.console = append(b.console, string(raw))
		}
	}
}

// do runs actions, failing the test on error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// js evaluates an expression and decodes its value.
func js[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// wait polls a JavaScript predicate until it is true.
func (b *browser) wait(what, predicate string, timeout time.Duration) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		b.t.Fatalf("waiting for %s (%s): %v", what, predicate, err)
	}
}

// go shows a page of the dashboard by its hash, without reloading it.
func (b *browser) goTo(hash string) {
	b.t.Helper()
	b.do("go to "+hash, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", hash)))
}

// viewport sets the page size: a laptop, or a phone (mobile, 2x pixels).
func (b *browser) viewport(w, h int64, phone bool) {
	b.t.Helper()
	if phone {
		b.do("phone viewport", chromedp.EmulateViewport(w, h, chromedp.EmulateMobile, chromedp.EmulateScale(2), chromedp.EmulateTouch))
		return
	}
	b.do("desktop viewport", chromedp.EmulateViewport(w, h))
}

// screenshot saves the whole page as name.png in the test's folder and,
// with -update-screenshots, in docs/img/.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	// Let charts and layout settle after the last change.
	b.do("settle", chromedp.Sleep(300*time.Millisecond))
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if *updateScreenshots {
		if err := os.MkdirAll(docsImg, 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(docsImg, "dashboard-"+name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// login opens the dashboard and signs in with token.
func (b *browser) login(adminURL, token string) {
	b.t.Helper()
	b.do("open the dashboard", chromedp.Navigate(adminURL+"/"))
	b.do("login form", chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do("sign in",
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
}

// requestsSeen returns the requests the page made so far.
func (b *browser) requestsSeen() []*network.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*network.Request(nil), b.requests...)
}
