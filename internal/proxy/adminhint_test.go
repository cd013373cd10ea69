package proxy

import "testing"

// A request meant for the admin API but sent to the data plane (its path
// under /api/ or a bearer token on it) is told where the admin API is;
// any other unknown endpoint gets the plain answer.
func TestAdminPathOnDataPlane(t *testing.T) { forEachModeTLS(t, testAdminPathOnDataPlane) }

func testAdminPathOnDataPlane(t *testing.T, opts Options) {
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", named(t, "blue").URL)))
	const hint = `this is modelgate's data plane, which serves predictions; the admin API listens at http://127.0.0.1:8081: point --admin or MODELGATE_ADMIN there`
	gw.SetAdminURL("http://127.0.0.1:8081")
	tests := []struct {
		name    string
		path    string
		headers []string
		want    string
	}{
		{"admin path", "/api/v1/endpoints", nil, `unknown endpoint "api": ` + hint},
		{"bearer token", "/nope/v1", []string{"Authorization", "Bearer abc"}, `unknown endpoint "nope": ` + hint},
		{"plain", "/nope/v1", nil, `unknown endpoint "nope"`},
		{"basic auth", "/nope/v1", []string{"Authorization", "Basic YTpi"}, `unknown endpoint "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, gw.url+tc.path, tc.headers...)
			if a.status != 404 {
				t.Fatalf("status = %d, want 404 (body %q)", a.status, a.body)
			}
			if got := jsonError(t, a); got != tc.want {
				t.Errorf("error = %q, want %q", got, tc.want)
			}
		})
	}
	gw.SetAdminURL("")
	want := `unknown endpoint "api": this is modelgate's data plane, which serves predictions; the admin API listens on the admin listener (admin.listen): point --admin or MODELGATE_ADMIN there`
	if got := jsonError(t, get(t, gw.url+"/api/v1/endpoints")); got != want {
		t.Errorf("admin address unknown: error = %q, want %q", got, want)
	}
}
