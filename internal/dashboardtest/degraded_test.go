package dashboardtest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/testenv"
)

// A gateway whose etcd stops answering (cluster mode) says so on whatever
// page the dashboard shows, and the line goes once etcd is back.
func TestDashboardShowsADegradedGateway(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := filepath.Join(t.TempDir(), "gw")
	d := testenv.StartDaemon(t, testenv.ClusterConfig(dir, cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))
	c := testenv.Connect(t, d)
	b := newBrowser(t)
	b.login(c.Admin, c.Token)
	b.wait("the overview", `document.querySelector('[data-endpoint="fraud"]') !== null`, 10*time.Second)
	if js[bool](b, `!document.getElementById("degraded").hidden`) {
		t.Fatal("a degraded line with etcd up")
	}
	cluster.StopMember(0)
	b.wait("the degraded line", `(l => !l.hidden && l.textContent.startsWith("This gateway is degraded: the state store has not answered for"))(document.getElementById("degraded"))`, 30*time.Second)
	cluster.Restart(0)
	b.wait("the line gone", `document.getElementById("degraded").hidden`, 30*time.Second)
}
