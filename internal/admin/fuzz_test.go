package admin

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequests sends arbitrary bodies and query values to the routes that
// parse them: every answer must be a success or a client error with the
// error JSON, never a 500 or a panic.
func FuzzRequests(f *testing.F) {
	f.Add("PUT", "/api/v1/endpoints/fraud/traffic", "", `{"blue":95,"green":5}`)
	f.Add("PUT", "/api/v1/endpoints/fraud/mirror", "", `{"green":10.5}`)
	f.Add("PUT", "/api/v1/endpoints/fraud/deployments/red", "", `{"backends":["http://127.0.0.1:1"],"timeout":"1s","health_check":{"path":"/h"}}`)
	f.Add("GET", "/api/v1/endpoints/fraud/metrics", "window=90s", "")
	f.Add("GET", "/api/v1/events", "since=3&limit=2&endpoint=fraud", "")
	f.Add("POST", "/api/v1/apply", "prune=true", "endpoints: []")
	f.Add("PUT", "/api/v1/endpoints/fraud/traffic", "", "{\"blue\": &a 50, \"green\": *a}")
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		if !strings.HasPrefix(path, "/api/v1/") {
			return
		}
		switch method {
		case "GET", "PUT", "DELETE", "POST":
		default:
			return
		}
		if strings.HasSuffix(path, "/events/stream") {
			return // a stream does not end on its own
		}
		u, err := url.Parse("http://admin" + path)
		if err != nil {
			return
		}
		u.RawQuery = query
		h := New(Options{Backend: newFake(), Token: testToken})
		req := httptest.NewRequest(method, "/", strings.NewReader(body))
		req.URL = u
		req.RequestURI = u.RequestURI()
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s with %q = %d: %s", method, path, query, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			decodeAny(t, rec.Body.Bytes())
		}
	})
}
