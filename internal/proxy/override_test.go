package proxy

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/internal/spec"
)

// secretBackend answers with its name and says whether the pin secret
// reached it (it must not: it is the gateway's).
func secretBackend(t *testing.T, name string) string {
	t.Helper()
	srv := named(t, name)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got-Secret", r.Header.Get("X-Model-Deployment-Secret"))
		w.Write([]byte(name))
	})
	return srv.URL
}

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pin-secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOverrideSettings: X-Model-Deployment pins a request by default;
// with the override off the header is ignored and the split decides;
// with a secret, only the right X-Model-Deployment-Secret pins, a missing
// or wrong one is refused with 403 and reaches no backend, and the secret
// is never forwarded.
func TestOverrideSettings(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-pin"
	path := writeSecret(t, secret)
	off := false
	forEachMode(t, func(t *testing.T, opts Options) {
		blue, green := secretBackend(t, "blue"), secretBackend(t, "green")
		mk := func(name string, o *spec.Override) spec.Endpoint {
			ep := mkEndpoint(t, name, spec.Weights{"blue": spec.Full}, dep("blue", blue), dep("green", green))
			ep.Override = o
			if err := ep.Validate(); err != nil {
				t.Fatal(err)
			}
			return ep
		}
		gw := modeGateway(t, opts,
			mk("open", nil),
			mk("closed", &spec.Override{Enabled: &off}),
			mk("guarded", &spec.Override{SecretFile: path}))

		cases := []struct {
			name, endpoint string
			headers        []string
			status         int
			deployment     string
			errorHas       string
		}{
			{"default: the header pins", "open", []string{"X-Model-Deployment", "green"}, 200, "green", ""},
			{"default: unknown deployment", "open", []string{"X-Model-Deployment", "purple"}, 400, "", "unknown deployment"},
			{"off: the header is ignored", "closed", []string{"X-Model-Deployment", "green"}, 200, "blue", ""},
			{"off: even an unknown name", "closed", []string{"X-Model-Deployment", "purple"}, 200, "blue", ""},
			{"secret: right", "guarded", []string{"X-Model-Deployment", "green", "X-Model-Deployment-Secret", secret}, 200, "green", ""},
			{"secret: wrong", "guarded", []string{"X-Model-Deployment", "green", "X-Model-Deployment-Secret", secret + "x"}, 403, "", "wrong X-Model-Deployment-Secret"},
			{"secret: a prefix", "guarded", []string{"X-Model-Deployment", "green", "X-Model-Deployment-Secret", secret[:10]}, 403, "", "wrong X-Model-Deployment-Secret"},
			{"secret: missing", "guarded", []string{"X-Model-Deployment", "green"}, 403, "", "needs the endpoint's secret"},
			{"secret: no pin, split as usual", "guarded", []string{"X-Model-Deployment-Secret", secret}, 200, "blue", ""},
		}
		for _, tc := range cases {
			a := get(t, gw.url+"/"+tc.endpoint+"/x", tc.headers...)
			if a.status != tc.status {
				t.Errorf("%s: status %d (%q), want %d", tc.name, a.status, a.body, tc.status)
				continue
			}
			if tc.errorHas != "" {
				if msg := jsonError(t, a); !strings.Contains(msg, tc.errorHas) {
					t.Errorf("%s: error %q, want it to say %q", tc.name, msg, tc.errorHas)
				}
				continue
			}
			if a.body != tc.deployment || a.deployment != tc.deployment {
				t.Errorf("%s: served by %q (X-Model-Deployment %q), want %s", tc.name, a.body, a.deployment, tc.deployment)
			}
			if got := a.header.Get("X-Got-Secret"); got != "" {
				t.Errorf("%s: the backend received X-Model-Deployment-Secret %q", tc.name, got)
			}
		}
		// Refused pins reached no backend and were recorded nowhere.
		for _, key := range []string{"guarded/blue", "guarded/green"} {
			want := map[string]int{"guarded/blue": 1, "guarded/green": 1}[key]
			if n := len(gw.recs.observations(key)); n != want {
				t.Errorf("%s: %d requests recorded, want %d (403s are not served)", key, n, want)
			}
		}
		// Pinned requests are recorded as such; the others are not.
		for _, key := range []string{"open/green", "guarded/green"} {
			for _, o := range gw.recs.observations(key) {
				if !o.Override {
					t.Errorf("%s: a pinned request recorded as split-routed", key)
				}
			}
		}
		for _, o := range gw.recs.observations("closed/blue") {
			if o.Override {
				t.Errorf("closed/blue: a request with the override off recorded as pinned")
			}
		}
	})
}

// TestOverrideSecretFileLifecycle: the secret file is read whenever the
// routes are set, and a file that cannot be used never fails them (they are
// set after the change is committed): an endpoint keeps the secret it had,
// a new one refuses every pin; a rotated secret replaces the old one.
func TestOverrideSecretFileLifecycle(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) { testOverrideSecretFileLifecycle(t, opts) })
}

func testOverrideSecretFileLifecycle(t *testing.T, opts Options) {
	blue := secretBackend(t, "blue")
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", blue)))
	oldSecret, newSecret := strings.Repeat("o", 40), strings.Repeat("n", 40)
	path := writeSecret(t, oldSecret)
	guarded := func() []spec.Endpoint {
		ep := mkEndpoint(t, "fraud", nil, dep("blue", blue))
		ep.Override = &spec.Override{SecretFile: path}
		return []spec.Endpoint{ep}
	}
	pin := func(secret string) int {
		return get(t, gw.url+"/fraud/x", "X-Model-Deployment", "blue", "X-Model-Deployment-Secret", secret).status
	}
	split := func() int { return get(t, gw.url+"/fraud/x").status }

	// A new endpoint rule whose file is unusable: every pin refused, the
	// split still served, no error.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := gw.SetRoutes(guarded()); err != nil {
		t.Fatalf("SetRoutes with an unusable secret file: %v, want the routes set", err)
	}
	a := get(t, gw.url+"/fraud/x", "X-Model-Deployment", "blue", "X-Model-Deployment-Secret", oldSecret)
	if a.status != 403 || !strings.Contains(jsonError(t, a), "cannot read the endpoint's secret") {
		t.Errorf("pin while the secret file is unusable: %d %q, want 403 saying the secret cannot be read", a.status, a.body)
	}
	if st := split(); st != 200 {
		t.Errorf("split request while the secret file is unusable: %d, want 200", st)
	}

	// Fixed and set again: the secret works.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := gw.SetRoutes(guarded()); err != nil {
		t.Fatal(err)
	}
	if st := pin(oldSecret); st != 200 {
		t.Errorf("pin with the secret: %d, want 200", st)
	}
	// Broken again: the secret read before is kept.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := gw.SetRoutes(guarded()); err != nil {
		t.Fatalf("SetRoutes after the file went bad: %v, want the routes set", err)
	}
	if st := pin(oldSecret); st != 200 {
		t.Errorf("pin with the kept secret: %d, want 200", st)
	}
	// Rotated: the new secret replaces the old one.
	if err := os.WriteFile(path, []byte(newSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := gw.SetRoutes(guarded()); err != nil {
		t.Fatal(err)
	}
	if o, n := pin(oldSecret), pin(newSecret); o != 403 || n != 200 {
		t.Errorf("after rotating: old secret %d, new %d; want 403 and 200", o, n)
	}
}
