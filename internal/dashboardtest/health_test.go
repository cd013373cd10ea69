package dashboardtest

import (
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/testenv"
)

// A deployment whose one backend is down (a closed port, checked every
// 50ms) is marked on the overview, with the backend and why in its title.
func TestDashboardShowsADeploymentWithNoHealthyBackend(t *testing.T) {
	blue := testenv.NewEcho(t, "blue")
	green := nettest.ClosedURL(t)
	d := testenv.StartDaemon(t, testenv.ConfigHeader(t.TempDir())+testenv.CheckedEndpoint(blue.URL(), green))
	c := testenv.Connect(t, d)
	b := newBrowser(t)
	b.login(c.Admin, c.Token)
	b.wait("green marked", `(e => e !== null && e.textContent === "no healthy backend")(document.querySelector('[data-endpoint="fraud"] tr[data-deployment="green"] [data-field="health"]'))`, 10*time.Second)
	title := js[string](b, `document.querySelector('[data-endpoint="fraud"] tr[data-deployment="green"] [data-field="health"]').title`)
	if want := green + " down: health check: dial tcp " + green[len("http://"):] + ": connect: connection refused\nevery request routed to it is answered 503"; title != want {
		t.Errorf("green's health title = %q, want %q", title, want)
	}
	if js[bool](b, `document.querySelector('[data-endpoint="fraud"] tr[data-deployment="blue"] [data-field="health"]') !== null`) {
		t.Error("blue, up, is marked")
	}
}
