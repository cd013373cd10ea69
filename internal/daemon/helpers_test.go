package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
)

// backend is a real HTTP model server stand-in that counts what it served.
type backend struct {
	name   string
	srv    *httptest.Server
	served atomic.Int64
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.served.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"predictions":[1],"served_by":%q,"path":%q,"query":%q,"body_len":%d,"request_id":%q}`,
			name, r.URL.Path, r.URL.RawQuery, len(body), r.Header.Get("X-Request-Id"))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) URL() string { return b.srv.URL }

// twoDeploymentConfig is an endpoint "fraud" with blue and green.
func twoDeploymentConfig(dir string, blue, green string, extra string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
state:
  path: %s
endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [%s]
      - name: green
        backends: [%s]
    traffic: {blue: 100}
%s`, filepath.Join(dir, "state.db"), blue, green, extra)
}

// startDaemon runs the real daemon in-process on :0 ports.
func startDaemon(t *testing.T, yaml string) *daemon.Daemon {
	t.Helper()
	return startDaemonWith(t, yaml, 0)
}

// startDaemonWith also sets how often rollouts are looked at.
func startDaemonWith(t *testing.T, yaml string, rolloutInterval time.Duration) *daemon.Daemon {
	t.Helper()
	f, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	ctx := context.Background()
	d, err := daemon.New(ctx, daemon.Options{Config: f, RolloutInterval: rolloutInterval})
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	if err := d.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return d
}

// client talks to one running daemon.
type client struct {
	t     *testing.T
	proxy string
	admin string
	token string
	http  *http.Client
}

func newClient(t *testing.T, d *daemon.Daemon) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, proxy: "http://" + d.ProxyAddr(), admin: "http://" + d.AdminAddr(), token: d.Token(),
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// api calls the admin API with the token and returns status and body.
func (c *client) api(method, path string, body any) (int, []byte) {
	c.t.Helper()
	return c.apiToken(c.token, method, path, body)
}

func (c *client) apiToken(token, method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.admin+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// predict sends one request through the data plane and returns the
// deployment that answered.
func (c *client) predict(path string, header map[string]string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodPost, c.proxy+path, strings.NewReader(`{"instances":[[1,2,3]]}`))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Model-Deployment"), nil
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
