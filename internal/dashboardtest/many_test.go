package dashboardtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/modelgate/modelgate/internal/testenv"
)

// manyEndpoints is the size of the gateway TestDashboardManyEndpoints
// looks at (issue 22: a thousand models behind one gateway).
const manyEndpoints = 1000

// A gateway with a thousand endpoints: the overview shows them a page at a
// time (reading only that page's endpoints in detail), the pager moves to
// the next page, and a search finds one endpoint by part of its name.
func TestDashboardManyEndpoints(t *testing.T) {
	echo := testenv.NewEcho(t, "v1")
	var cfg strings.Builder
	cfg.WriteString(testenv.ConfigHeader(t.TempDir()))
	for i := range manyEndpoints {
		fmt.Fprintf(&cfg, "  - name: model-%04d\n    deployments:\n      - {name: v1, backends: [%s]}\n    traffic: {v1: 100}\n", i, echo.URL())
	}
	d := testenv.StartDaemon(t, cfg.String())
	c := testenv.Connect(t, d)
	b := newBrowser(t)
	start := time.Now()
	b.login(c.Admin, c.Token)
	b.wait("the first page", `document.querySelectorAll('#endpoints [data-endpoint]').length === 20`, 20*time.Second)
	t.Logf("the overview of %d endpoints drawn %s after the login began", manyEndpoints, time.Since(start).Round(time.Millisecond))
	if got := js[string](b, `document.querySelector('#pager [data-field="range"]').textContent`); got != "1–20 of 1,000 endpoints" {
		t.Errorf("the pager says %q", got)
	}
	if got := js[string](b, `document.querySelector('#endpoints [data-endpoint]').dataset.endpoint`); got != "model-0000" {
		t.Errorf("the first page starts with %q, want model-0000", got)
	}
	// Only the page's endpoints are read in detail.
	detail := 0
	for _, r := range b.requestsSeen() {
		if strings.Contains(r.URL, "/metrics?window=1m") {
			detail++
		}
	}
	if detail == 0 || detail > 3*20 {
		t.Errorf("%d metrics reads for a page of 20 (a few refreshes at most), want them per page, not per endpoint", detail)
	}

	b.do("next page", chromedp.Click(chromedp.CSS("#next-page")))
	b.wait("the second page", `(e => e !== null && e.dataset.endpoint === "model-0020")(document.querySelector('#endpoints [data-endpoint]'))`, 10*time.Second)
	if got := js[string](b, `document.querySelector('#pager [data-field="range"]').textContent`); got != "21–40 of 1,000 endpoints" {
		t.Errorf("the pager on the second page says %q", got)
	}

	b.do("search", chromedp.SendKeys(chromedp.CSS("#endpoint-search"), "0777"))
	b.wait("the search's one match", `(l => l.length === 1 && l[0].dataset.endpoint === "model-0777")(document.querySelectorAll('#endpoints [data-endpoint]'))`, 10*time.Second)
	if got := js[string](b, `document.querySelector('#pager [data-field="range"]').textContent`); got != "1–1 of 1 of 1,000 endpoints match" {
		t.Errorf("the pager after the search says %q", got)
	}
	b.do("search for nothing", chromedp.Evaluate[chromedp.Void](`(e => { e.value = "nope"; e.dispatchEvent(new Event("input")); })(document.querySelector("#endpoint-search"))`))
	b.wait("no match said", `(e => e !== null && e.textContent === 'No endpoint name contains "nope".')(document.querySelector('#no-match'))`, 10*time.Second)
}
