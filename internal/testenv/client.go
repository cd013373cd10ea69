package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/shadow"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Client talks to one running daemon: the admin API with its token, and
// the data plane. Its helpers fail the test on what they cannot do, except
// the data-plane calls, which return their error for load and its checks.
type Client struct {
	// Proxy is the data plane's base URL, http://host:port.
	Proxy string
	// Admin is the admin API's base URL, http://host:port.
	Admin string
	// Token is the admin token API sends.
	Token string
	// HTTP is the client every call goes through.
	HTTP *http.Client

	t testing.TB
}

// Connect returns a client for d.
func Connect(t testing.TB, d *daemon.Daemon) *Client {
	return NewClient(t, "http://"+d.ProxyAddr(), "http://"+d.AdminAddr(), d.Token())
}

// NewClient returns a client for the daemon at the base URLs proxy and
// admin (a child process, say), calling the admin API with token.
func NewClient(t testing.TB, proxy, admin, token string) *Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &Client{Proxy: proxy, Admin: admin, Token: token, t: t,
		HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// API calls the admin API with the token and returns status and body.
// A string body is sent as it is, any other non-nil body as JSON.
func (c *Client) API(method, path string, body any) (int, []byte) {
	c.t.Helper()
	return c.APIToken(c.Token, method, path, body)
}

// APIToken is API with another token; empty sends none.
func (c *Client) APIToken(token, method, path string, body any) (int, []byte) {
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
	req, err := http.NewRequest(method, c.Admin+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// Get decodes the answer of GET path on the admin API into v; anything
// but 200 fails the test.
func (c *Client) Get(path string, v any) {
	c.t.Helper()
	status, body := c.API(http.MethodGet, path, nil)
	if status != http.StatusOK {
		c.t.Fatalf("GET %s = %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// Post sends a JSON body to path on the data plane, with the headers hdr.
func (c *Client) Post(path string, body []byte, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, c.Proxy+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.HTTP.Do(req)
}

// Predict sends one small KServe v1 request to path on the data plane and
// returns the status and the deployment that answered.
func (c *Client) Predict(path string, hdr map[string]string) (int, string, error) {
	resp, err := c.Post(path, []byte(`{"instances":[[1,2,3]]}`), hdr)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Model-Deployment"), nil
}

// StartLoad sends Predict(path, hdr) from workers goroutines, back to
// back, until the load is stopped or the test ends.
func (c *Client) StartLoad(workers int, path string, hdr map[string]string) *Load {
	return StartLoad(c.t, workers, 0, func() { c.Predict(path, hdr) })
}

// Traffic returns the live traffic split of endpoint ep.
func (c *Client) Traffic(ep string) spec.Weights {
	c.t.Helper()
	var w spec.Weights
	c.Get("/api/v1/endpoints/"+ep+"/traffic", &w)
	return w
}

// Metrics returns the telemetry report of ep over window ("1m", "5m").
func (c *Client) Metrics(ep, window string) telemetry.Report {
	c.t.Helper()
	var r telemetry.Report
	c.Get("/api/v1/endpoints/"+ep+"/metrics?window="+window, &r)
	return r
}

// ShadowReport returns the shadow report of ep over window.
func (c *Client) ShadowReport(ep, window string) shadow.Report {
	c.t.Helper()
	var r shadow.Report
	c.Get("/api/v1/endpoints/"+ep+"/shadow?window="+window, &r)
	return r
}

// Events returns the event log of ep, oldest first.
func (c *Client) Events(ep string) []store.Event {
	c.t.Helper()
	var list struct{ Events []store.Event }
	c.Get("/api/v1/events?endpoint="+ep, &list)
	return list.Events
}

// Rollout returns the current (or last) rollout of ep.
func (c *Client) Rollout(ep string) rollout.Rollout {
	c.t.Helper()
	var r rollout.Rollout
	c.Get("/api/v1/endpoints/"+ep+"/rollout", &r)
	return r
}

// StartRollout starts a rollout of ep with the JSON body; anything but 201
// fails the test.
func (c *Client) StartRollout(ep, body string) rollout.Rollout {
	c.t.Helper()
	status, resp := c.API(http.MethodPost, "/api/v1/endpoints/"+ep+"/rollouts", body)
	if status != http.StatusCreated {
		c.t.Fatalf("POST rollouts %s = %d %s", body, status, resp)
	}
	var r rollout.Rollout
	json.Unmarshal(resp, &r)
	return r
}

// WaitPhase polls the rollout of ep until it is in one of phases, and
// returns it.
func (c *Client) WaitPhase(ep string, timeout time.Duration, phases ...rollout.Phase) rollout.Rollout {
	c.t.Helper()
	return c.waitRollout(ep, timeout, fmt.Sprintf("rollout phase %v", phases), phases)
}

// WaitEnded polls the rollout of ep until it ends or pauses, and returns it.
func (c *Client) WaitEnded(ep string, timeout time.Duration) rollout.Rollout {
	c.t.Helper()
	return c.waitRollout(ep, timeout, "the rollout of "+ep+" to end",
		[]rollout.Phase{rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhaseAborted, rollout.PhasePaused})
}

// waitRollout polls the rollout of ep until it is in one of phases. If the
// test fails, it logs the last rollout seen when the test ends.
func (c *Client) waitRollout(ep string, timeout time.Duration, what string, phases []rollout.Phase) rollout.Rollout {
	c.t.Helper()
	var r rollout.Rollout
	c.t.Cleanup(func() {
		if c.t.Failed() {
			raw, _ := json.MarshalIndent(struct {
				Phase  rollout.Phase
				Stage  int
				Reason string
				Gates  any
			}{r.Phase, r.Stage, r.Reason, r.Gates}, "", " ")
			c.t.Logf("last rollout seen: %s", raw)
		}
	})
	WaitFor(c.t, timeout, what, func() bool {
		r = c.Rollout(ep)
		for _, p := range phases {
			if r.Phase == p {
				return true
			}
		}
		return false
	})
	return r
}
