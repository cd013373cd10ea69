package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/shadow"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// startDaemon runs the real daemon in-process on the :0 ports of yaml,
// looking at rollouts every 100ms.
func startDaemon(t *testing.T, yaml string) *client {
	t.Helper()
	f, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, yaml)
	}
	d, err := daemon.New(context.Background(), daemon.Options{Config: f, RolloutInterval: 100 * time.Millisecond})
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
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, proxy: "http://" + d.ProxyAddr(), admin: "http://" + d.AdminAddr(), token: d.Token(),
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// header is the start of a config: :0 listeners, state in dir.
func header(dir string) string {
	return fmt.Sprintf("listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstate:\n  path: %s/state.db\nendpoints:\n", dir)
}

// client talks to one running daemon.
type client struct {
	t     *testing.T
	proxy string
	admin string
	token string
	http  *http.Client
}

// api calls the admin API with the token and returns status and body.
func (c *client) api(method, path string, body any) (int, []byte) {
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
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// get decodes the answer of GET path into v; anything but 200 fails.
func (c *client) get(path string, v any) {
	c.t.Helper()
	status, body := c.api("GET", path, nil)
	if status != http.StatusOK {
		c.t.Fatalf("GET %s = %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// post sends body to the data plane and returns the answer.
func (c *client) post(path string, body []byte, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, c.proxy+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.http.Do(req)
}

func (c *client) metrics(ep, window string) telemetry.Report {
	c.t.Helper()
	var r telemetry.Report
	c.get("/api/v1/endpoints/"+ep+"/metrics?window="+window, &r)
	return r
}

func (c *client) shadowReport(ep, window string) shadow.Report {
	c.t.Helper()
	var r shadow.Report
	c.get("/api/v1/endpoints/"+ep+"/shadow?window="+window, &r)
	return r
}

func (c *client) traffic(ep string) spec.Weights {
	c.t.Helper()
	var w spec.Weights
	c.get("/api/v1/endpoints/"+ep+"/traffic", &w)
	return w
}

func (c *client) rollout(ep string) rollout.Rollout {
	c.t.Helper()
	var r rollout.Rollout
	c.get("/api/v1/endpoints/"+ep+"/rollout", &r)
	return r
}

func (c *client) startRollout(ep, body string) rollout.Rollout {
	c.t.Helper()
	status, resp := c.api("POST", "/api/v1/endpoints/"+ep+"/rollouts", body)
	if status != http.StatusCreated {
		c.t.Fatalf("POST rollouts %s = %d %s", body, status, resp)
	}
	var r rollout.Rollout
	json.Unmarshal(resp, &r)
	return r
}

// waitEnded polls the rollout of ep until it ends or pauses, and returns
// it; on a test failure it logs the last rollout seen.
func (c *client) waitEnded(ep string, timeout time.Duration) rollout.Rollout {
	c.t.Helper()
	var r rollout.Rollout
	defer func() {
		if c.t.Failed() {
			raw, _ := json.MarshalIndent(struct {
				Phase  rollout.Phase
				Stage  int
				Reason string
				Gates  any
			}{r.Phase, r.Stage, r.Reason, r.Gates}, "", " ")
			c.t.Logf("last rollout seen: %s", raw)
		}
	}()
	waitFor(c.t, timeout, "the rollout of "+ep+" to end", func() bool {
		r = c.rollout(ep)
		switch r.Phase {
		case rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhaseAborted, rollout.PhasePaused:
			return true
		}
		return false
	})
	return r
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", d, what)
		case <-tick.C:
		}
	}
}
