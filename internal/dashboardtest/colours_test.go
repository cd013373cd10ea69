package dashboardtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/testenv"
)

// hueJS is a JavaScript function giving the hue (degrees) of an element's
// colour: its background, or an SVG path's stroke.
const hueJS = `(el => {
	const st = getComputedStyle(el);
	const c = el instanceof SVGElement ? st.stroke : st.backgroundColor;
	const [r, g, b] = c.match(/\d+/g).map(x => +x / 255);
	const max = Math.max(r, g, b), d = max - Math.min(r, g, b);
	if (d === 0) return -1;
	const h = 60 * (max === r ? ((g - b) / d + 6) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4);
	return h;
})`

// A deployment named after a colour is drawn in it, on the overview and
// on the endpoint page, and the others in colours no name claims: red
// red, green green, v2 neither. v2 has no healthy backend (a closed port),
// which the endpoint page marks too, as the overview does.
func TestDashboardColoursFollowNamesAndTheEndpointPageMarksHealth(t *testing.T) {
	red, green := testenv.NewEcho(t, "red"), testenv.NewEcho(t, "green")
	down := nettest.ClosedURL(t)
	d := testenv.StartDaemon(t, testenv.ConfigHeader(t.TempDir())+fmt.Sprintf(`  - name: fraud
    deployments:
      - {name: red, backends: [%s]}
      - name: v2
        backends: [%s]
        health_check: {path: /, interval: 50ms}
      - {name: green, backends: [%s]}
    traffic: {red: 100}
`, red.URL(), down, green.URL()))
	c := testenv.Connect(t, d)
	for range 5 {
		c.Predict("/fraud/predict", nil)
	}
	b := newBrowser(t)
	b.login(c.Admin, c.Token)

	// near says whether hue a is within tol degrees of b on the circle.
	near := func(a, b, tol float64) bool {
		d := a - b
		for d < -180 {
			d += 360
		}
		for d > 180 {
			d -= 360
		}
		return d >= -tol && d <= tol
	}
	check := func(page, selector string) {
		t.Helper()
		hue := func(dep string) float64 {
			return js[float64](b, fmt.Sprintf(`%s(document.querySelector(%q))`, hueJS, fmt.Sprintf(selector, dep)))
		}
		r, g, v := hue("red"), hue("green"), hue("v2")
		if !near(r, 0, 15) {
			t.Errorf("%s: red drawn at hue %.0f°, want red (0°)", page, r)
		}
		if !near(g, 125, 25) {
			t.Errorf("%s: green drawn at hue %.0f°, want green (about 125°)", page, g)
		}
		if v < 0 || near(v, r, 40) || near(v, g, 40) {
			t.Errorf("%s: v2 drawn at hue %.0f°, want a colour at least 40° from red's %.0f° and green's %.0f°", page, v, r, g)
		}
	}

	b.wait("the overview", `document.querySelectorAll('[data-endpoint="fraud"] tr[data-deployment] .swatch').length === 3`, 10*time.Second)
	check("overview", `[data-endpoint="fraud"] tr[data-deployment=%q] .swatch`)

	b.goTo("#/endpoints/fraud")
	b.wait("v2 marked on the endpoint page", `(e => e !== null && e.textContent === "no healthy backend")(document.querySelector('#charts [data-deployment="v2"] [data-field="health"]'))`, 10*time.Second)
	check("endpoint page", `#charts [data-deployment=%q] path[data-series=%[1]q]`)
	title := js[string](b, `document.querySelector('#charts [data-deployment="v2"] [data-field="health"]').title`)
	if want := down + " down: health check: dial tcp " + down[len("http://"):] + ": connect: connection refused\nevery request routed to it is answered 503"; title != want {
		t.Errorf("v2's health title = %q, want %q", title, want)
	}
	if js[bool](b, `document.querySelector('#charts [data-deployment="red"] [data-field="health"], #charts [data-deployment="green"] [data-field="health"]') !== null`) {
		t.Error("red or green, up, is marked")
	}
}
