package dashboardtest

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/testenv"
)

// In a fleet the dashboard, loaded from one replica, shows the requests
// every replica served; the picker shows one replica's alone; and a
// replica listed that does not answer is named above the numbers, which
// then hold the others' only.
func TestDashboardShowsTheFleetAndOneReplica(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	fleetDir := t.TempDir()
	da := testenv.StartDaemon(t, testenv.ClusterConfig(filepath.Join(fleetDir, "a"), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))
	db := testenv.StartDaemon(t, testenv.ClusterConfig(filepath.Join(fleetDir, "b"), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))
	a, b := testenv.Connect(t, da), testenv.Connect(t, db)
	var idB string
	testenv.WaitFor(t, 5*time.Second, "both replicas listed", func() bool {
		var reps api.ReplicaList
		a.Get("/api/v1/replicas", &reps)
		for _, r := range reps.Replicas {
			if r.AdminURL == "http://"+db.AdminAddr() {
				idB = r.ID
			}
		}
		return len(reps.Replicas) == 2 && idB != ""
	})
	for c, n := range map[*testenv.Client]int{a: 7, b: 5} {
		for range n {
			if status, _, err := c.Predict("/fraud/predict", nil); err != nil || status != 200 {
				t.Fatalf("predict = %d, %v", status, err)
			}
		}
	}

	br := newBrowser(t)
	br.login(a.Admin, a.Token)
	rpm := func(want string) string {
		return fmt.Sprintf(`document.querySelector('[data-endpoint="fraud"] tr[data-deployment="blue"] td:nth-child(4)')?.textContent === %q`, want)
	}
	pick := func(id string) {
		br.do("pick "+id, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(s => { s.value = %q; s.dispatchEvent(new Event("change")); })(document.getElementById("replica"))`, id)))
	}
	br.wait("the fleet's 12 requests a minute", rpm("12"), 10*time.Second)
	br.wait("the picker with the fleet and both replicas", `!document.getElementById("replica-pick").hidden && document.querySelectorAll("#replica option").length === 3`, 5*time.Second)
	if js[bool](br, `!document.getElementById("replicas-line").hidden`) {
		t.Error("a missing-replica line while every replica answers")
	}
	pick(idB)
	br.wait("replica b's 5", rpm("5"), 5*time.Second)
	br.screenshot("fleet-replica")
	asked := false
	for _, req := range br.requestsSeen() {
		asked = asked || strings.Contains(req.URL, "/metrics?window=1m&replica="+idB)
	}
	if !asked {
		t.Error("no metrics call asked for replica b")
	}

	// A replica still listed whose gateway is gone (its port refuses).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	rec, _ := json.Marshal(api.Replica{ID: "gw-gone", AdminURL: gone})
	if _, err := cluster.Client(t).Put(t.Context(), "/fleet/k/replicas/gw-gone", string(rec)); err != nil {
		t.Fatal(err)
	}
	pick("")
	br.wait("the line naming the missing replica", `(l => !l.hidden && l.textContent.startsWith("Showing 2 of 3 replicas: gw-gone did not answer ("))(document.getElementById("replicas-line"))`, 10*time.Second)
	br.wait("the fleet's 12 requests a minute, gw-gone left out", rpm("12"), 5*time.Second)
	br.screenshot("fleet-missing")
}
