package daemon_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/internal/testenv"
)

// TestWrongPort sends each plane what was meant for the other, on the real
// daemon: an admin API call to the data plane is told where the admin API
// listens, a prediction POSTed to the admin listener where the data plane
// is.
func TestWrongPort(t *testing.T) {
	dir := t.TempDir()
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(dir, "http://127.0.0.1:1", "http://127.0.0.1:1", ""))
	for _, tc := range []struct {
		name, method, url, want string
		status                  int
	}{
		{"admin call to the data plane", "GET", "http://" + d.ProxyAddr() + "/api/v1/endpoints",
			`unknown endpoint "api": this is modelgate's data plane, which serves predictions; the admin API listens at http://` + d.AdminAddr() + `: point --admin or MODELGATE_ADMIN there`, 404},
		{"prediction to the admin listener", "POST", "http://" + d.AdminAddr() + "/fraud/v1/models/fraud:predict",
			`method POST not allowed on /fraud/v1/models/fraud:predict: this is modelgate's admin API and dashboard (the API is under /api/v1/); send predictions to the data plane at ` + d.ProxyAddr() + `/fraud/v1/models/fraud:predict`, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, strings.NewReader(`{"instances": [[1]]}`))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Error string }
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || e.Error != tc.want {
				t.Errorf("%d %q\nwant %d %q", resp.StatusCode, e.Error, tc.status, tc.want)
			}
		})
	}
}
