package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/authtoken"
	"github.com/modelgate/modelgate/internal/spec"
)

const viewerToken = "viewer-token"

// tokenClock is a settable clock for the tokens' overlap.
type tokenClock struct{ t time.Time }

func (c *tokenClock) now() time.Time { return c.t }

func newTokens(c *tokenClock) *authtoken.Set {
	s := authtoken.New(10*time.Minute, c.now)
	s.Put(authtoken.Admin, testToken)
	s.Put(authtoken.ReadOnly, viewerToken)
	return s
}

// The read-only token changes nothing: every call that is not a read is
// answered 403 with what to use instead, and the backend is not called.
// The state backup (it holds webhook secrets) and the profiler are
// refused too. Reads pass and say which token they were made with.
// internal/daemon's TestReadOnlyTokenOnEveryRoute does the same on every
// route of APIRoutes with the real rollouts, shadows and state.
func TestReadOnlyTokenOnlyReads(t *testing.T) {
	clock := &tokenClock{t: time.Unix(1e9, 0)}
	for _, c := range append(apiCalls, call{"GET", "/debug/pprof/goroutine?debug=1", ""}) {
		if c.path == "/api/v1/events/stream" {
			continue // a stream never ends: internal/daemon's test reads it
		}
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			f := newFake()
			before, _ := f.Snapshot()
			snap := &snapshotter{data: []byte("state")}
			snap.failAfter.Store(-1)
			h := New(Options{Backend: f, Tokens: newTokens(clock), Snapshots: snap})
			rec := do(t, h, viewerToken, c)
			refused := c.method != http.MethodGet || c.path == "/api/v1/state/backup" || strings.HasPrefix(c.path, "/debug/pprof/")
			var body api.ErrorBody
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			switch {
			case refused:
				if rec.Code != http.StatusForbidden || !strings.Contains(body.Error, "read-only token") || !strings.Contains(body.Error, "admin token (admin.token_file)") {
					t.Fatalf("%s %s = %d %q; want 403 saying the read-only token may not and the admin token may", c.method, c.path, rec.Code, body.Error)
				}
				after, changes := f.Snapshot()
				if changes != 0 || !cmp.Equal(before, after) {
					t.Errorf("the backend changed on a 403")
				}
				if file, _ := f.LastApply(); file != nil {
					t.Errorf("apply reached the backend on a 403")
				}
				if snap.calls.Load() != 0 {
					t.Errorf("a backup was taken on a 403")
				}
			case rec.Code == http.StatusNotFound && (c.path == "/api/v1/nope" || c.path == "/api/v1"):
			default:
				if rec.Code != http.StatusOK || rec.Header().Get(api.TokenKindHeader) != "read-only" {
					t.Fatalf("%s %s = %d, %s %q; want 200 from a read with the read-only token", c.method, c.path, rec.Code, api.TokenKindHeader, rec.Header().Get(api.TokenKindHeader))
				}
			}
		})
	}
}

// Webhook URLs and secrets could forge or read notifications: the
// read-only token sees the hook's scheme and host and that a secret is
// set; the admin token sees them whole.
func TestReadOnlyTokenSeesWebhooksRedacted(t *testing.T) {
	ep := admintest.Fraud()
	ep.Webhooks = []spec.Webhook{
		{URL: "https://hooks.slack.com/services/T0/B0/XXXXSECRET?x=1", Secret: "hmac-key"},
		{URL: "https://ci.example.com/hook"},
	}
	h := New(Options{Backend: admintest.NewBackend(ep), Tokens: newTokens(&tokenClock{t: time.Now()})})
	for _, path := range []string{"/api/v1/endpoints", "/api/v1/endpoints/fraud"} {
		for _, tc := range []struct {
			token string
			want  []spec.Webhook
		}{
			{viewerToken, []spec.Webhook{{URL: "https://hooks.slack.com", Secret: spec.RedactedSecret}, {URL: "https://ci.example.com"}}},
			{testToken, ep.Webhooks},
		} {
			rec := do(t, h, tc.token, call{"GET", path, ""})
			var got struct {
				Webhooks  []spec.Webhook  `json:"webhooks"`
				Endpoints []spec.Endpoint `json:"endpoints"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Endpoints) == 1 {
				got.Webhooks = got.Endpoints[0].Webhooks
			}
			if diff := cmp.Diff(tc.want, got.Webhooks); diff != "" {
				t.Errorf("GET %s with the %s token: webhooks (-want +got):\n%s", path, rec.Header().Get(api.TokenKindHeader), diff)
			}
		}
	}
	if strings.Contains(do(t, h, viewerToken, call{"GET", "/api/v1/endpoints", ""}).Body.String(), "SECRET") {
		t.Errorf("the read-only answer holds the hook's path")
	}
}

// A token replaced in its file stays valid for the overlap, with a
// Warning saying until when; GET /api/v1/token says the same; once the
// overlap has passed it is refused.
func TestRotatedTokenOverlap(t *testing.T) {
	clock := &tokenClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	tokens := newTokens(clock)
	h := New(Options{Backend: newFake(), Tokens: tokens})
	tokens.Put(authtoken.Admin, "new-admin-token")
	until := clock.t.Add(10 * time.Minute)

	rec := do(t, h, testToken, call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":95,"green":5}`})
	if rec.Code != http.StatusOK {
		t.Fatalf("the replaced admin token within its overlap = %d %s, want 200", rec.Code, rec.Body)
	}
	if w := rec.Header().Get("Warning"); !strings.Contains(w, "replaced") || !strings.Contains(w, "2026-12-07T12:10:00Z") {
		t.Errorf("Warning = %q, want the replacement and its end", w)
	}
	var info api.TokenInfo
	if err := json.Unmarshal(do(t, h, testToken, call{"GET", "/api/v1/token", ""}).Body.Bytes(), &info); err != nil {
		t.Fatal(err)
	}
	if info.Kind != "admin" || info.ValidUntil == nil || !info.ValidUntil.Equal(until) {
		t.Errorf("GET /api/v1/token with the replaced token = %+v, want admin until %v", info, until)
	}
	info = api.TokenInfo{}
	if err := json.Unmarshal(do(t, h, "new-admin-token", call{"GET", "/api/v1/token", ""}).Body.Bytes(), &info); err != nil {
		t.Fatal(err)
	}
	if info.Kind != "admin" || info.ValidUntil != nil {
		t.Errorf("GET /api/v1/token with the new token = %+v, want admin with no end", info)
	}
	if rec := do(t, h, "new-admin-token", call{"GET", "/api/v1/endpoints", ""}); rec.Header().Get("Warning") != "" {
		t.Errorf("the new token got a Warning: %q", rec.Header().Get("Warning"))
	}
	clock.t = until
	if rec := do(t, h, testToken, call{"GET", "/api/v1/endpoints", ""}); rec.Code != http.StatusUnauthorized {
		t.Errorf("the replaced token after its overlap = %d, want 401", rec.Code)
	}
}
