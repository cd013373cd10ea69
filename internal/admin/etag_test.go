package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// GET of an endpoint, its traffic or its mirror answers the endpoint's
// revision as ETag; every write to the endpoint sent with If-Match is
// refused (409) once the endpoint moved on, and changes nothing.
func TestETagAndIfMatch(t *testing.T) {
	f := newFake()
	h := New(Options{Backend: f, Token: testToken})
	get := func(path string) string {
		rec := do(t, h, testToken, call{"GET", path, ""})
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d", path, rec.Code)
		}
		return rec.Header().Get("ETag")
	}
	first := get("/api/v1/endpoints/fraud")
	if first == "" || get("/api/v1/endpoints/fraud/traffic") != first || get("/api/v1/endpoints/fraud/mirror") != first {
		t.Fatalf("ETags differ or are missing: %q", first)
	}
	send := func(c call, ifMatch string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	traffic := call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":95,"green":5}`}
	if rec := send(traffic, first); rec.Code != 200 {
		t.Fatalf("PUT with the current ETag = %d %s", rec.Code, rec.Body)
	}
	second := get("/api/v1/endpoints/fraud")
	if second == first {
		t.Fatalf("the ETag did not change with the endpoint: %s", second)
	}
	_, changes := f.Snapshot()
	for _, c := range []call{
		traffic,
		{"PUT", "/api/v1/endpoints/fraud/mirror", `{"green":10}`},
		{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"backends":["http://127.0.0.1:9003"]}`},
		{"DELETE", "/api/v1/endpoints/fraud/deployments/green", ""},
	} {
		if rec := send(c, first); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "If-Match") {
			t.Errorf("%s %s with a stale If-Match = %d %s, want 409", c.method, c.path, rec.Code, rec.Body)
		}
		if rec := send(c, `W/"x"`); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "not an ETag of this API") {
			t.Errorf("%s %s with a malformed If-Match = %d %s, want 400", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if _, after := f.Snapshot(); after != changes {
		t.Errorf("refused writes changed the endpoint %d times", after-changes)
	}
}
