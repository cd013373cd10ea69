package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
)

// CallTimeout bounds one admin API call (not the event stream).
const CallTimeout = 30 * time.Second

// Client is a small typed client of the admin API.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	// warnings receives each distinct Warning header the API answers
	// (a replaced token still in its overlap); nil: ignored.
	warnings io.Writer
	warnMu   sync.Mutex
	warned   map[string]bool
}

// SetWarnings makes the client write each distinct Warning the API
// answers to w, once: a token replaced on the daemon and still accepted
// for its overlap is said, with when it stops.
func (c *Client) SetWarnings(w io.Writer) { c.warnings = w }

// warn writes resp's Warning header, if any and new, to c.warnings.
func (c *Client) warn(resp *http.Response) {
	c.warnMu.Lock()
	defer c.warnMu.Unlock()
	for _, v := range resp.Header.Values("Warning") {
		if c.warnings == nil || c.warned[v] {
			continue
		}
		if c.warned == nil {
			c.warned = map[string]bool{}
		}
		c.warned[v] = true
		fmt.Fprintf(c.warnings, "Warning: %s\n", warningText(v))
	}
}

// warningText is the quoted text of a Warning header value
// (299 agent "text"), or the whole value when it has no quoted part.
func warningText(v string) string {
	if i, j := strings.IndexByte(v, '"'), strings.LastIndexByte(v, '"'); i >= 0 && j > i {
		return v[i+1 : j]
	}
	return v
}

// NewClient returns a client of the admin API at addr, either host:port
// or a URL such as http://10.0.0.5:8081, sending token on every call.
// A nil hc means http.DefaultClient.
func NewClient(addr, token string, hc *http.Client) (*Client, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("admin address %q: use host:port or http(s)://host:port", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, token: token, http: hc}, nil
}

// APIError is an error answer of the admin API: its status, summary and,
// for an invalid request, every problem.
type APIError struct {
	Status   int
	Message  string
	Problems []spec.Problem
}

// Error is the summary followed by every problem, one a line. A single
// problem already spelled out by the summary is not repeated.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if len(e.Problems) == 1 && strings.HasSuffix(msg, e.Problems[0].Error()) {
		return msg
	}
	var b strings.Builder
	b.WriteString(msg)
	for i := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(e.Problems[i].Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As the problems and, for 404 and 409,
// api.ErrNotFound and api.ErrConflict.
func (e *APIError) Unwrap() []error {
	var errs []error
	for i := range e.Problems {
		p := e.Problems[i]
		errs = append(errs, &p)
	}
	switch e.Status {
	case http.StatusNotFound:
		errs = append(errs, api.ErrNotFound)
	case http.StatusConflict:
		errs = append(errs, api.ErrConflict)
	}
	return errs
}

// errorBody is the admin API's error JSON.
type errorBody struct {
	Error    string         `json:"error"`
	Problems []spec.Problem `json:"problems"`
}

// request builds a call to path (already escaped) with query.
func (c *Client) request(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Request, error) {
	u := c.base.String() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// do makes one call and decodes a 2xx JSON answer into out (unless nil);
// any other answer becomes an *APIError.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, contentType string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	req, err := c.request(ctx, method, path, query, body)
	if err != nil {
		return 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.unreachable(err)
	}
	if leader := resp.Header.Get(api.LeaderHeader); resp.StatusCode == http.StatusServiceUnavailable && leader != "" {
		// Cluster mode: rollout starts and actions go to the fleet's
		// leader; send this one there, once.
		resp.Body.Close()
		if resp, err = c.toLeader(ctx, leader, method, path, query, body, contentType); err != nil {
			return 0, err
		}
	}
	defer resp.Body.Close()
	c.warn(resp)
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, apiError(resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// toLeader sends the call again to the fleet's leader at the admin URL
// leader, with the same token.
func (c *Client) toLeader(ctx context.Context, leader, method, path string, query url.Values, body []byte, contentType string) (*http.Response, error) {
	lc, err := NewClient(leader, c.token, c.http)
	if err != nil {
		return nil, fmt.Errorf("the fleet's leader announced the admin address %q: %w", leader, err)
	}
	if c.base.Scheme == "https" && lc.base.Scheme != "https" {
		// The token would cross the network in clear text.
		return nil, fmt.Errorf("the fleet's leader announced %s, which is not https while this gateway is: not sending the token there; set admin.advertise_url to its https URL", leader)
	}
	req, err := lc.request(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.warnings != nil {
		fmt.Fprintf(c.warnings, "Note: sent to the fleet's leader at %s (the gateway at %s does not lead the rollouts)\n", lc.base.Host, c.base.Host)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sent to the fleet's leader: %w", lc.unreachable(err))
	}
	return resp, nil
}

// unreachable explains a failed connection, with the cause but without
// the URL the transport error repeats.
func (c *Client) unreachable(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach the admin API at %s (is modelgate serve running? see --admin or %s): %w", c.base.Host, EnvAdmin, err)
}

func apiError(status int, data []byte) error {
	var body errorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Error == "" {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		return &APIError{Status: status, Message: fmt.Sprintf("admin API answered %d: %s", status, msg)}
	}
	return &APIError{Status: status, Message: body.Error, Problems: body.Problems}
}

func (c *Client) getJSON(ctx context.Context, path string, query url.Values, out any) error {
	_, err := c.do(ctx, http.MethodGet, path, query, nil, "", out)
	return err
}

func endpointPath(name string, rest ...string) string {
	p := "/api/v1/endpoints/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// Endpoints lists every endpoint.
func (c *Client) Endpoints(ctx context.Context) ([]spec.Endpoint, error) {
	var out struct {
		Endpoints []spec.Endpoint `json:"endpoints"`
	}
	err := c.getJSON(ctx, "/api/v1/endpoints", nil, &out)
	return out.Endpoints, err
}

// Endpoint returns one endpoint.
func (c *Client) Endpoint(ctx context.Context, name string) (spec.Endpoint, error) {
	var ep spec.Endpoint
	err := c.getJSON(ctx, endpointPath(name), nil, &ep)
	return ep, err
}

// SetTraffic replaces an endpoint's split and returns it as stored; force
// sets it even while a rollout is moving the endpoint.
func (c *Client) SetTraffic(ctx context.Context, endpoint string, w spec.Weights, force bool) (spec.Weights, error) {
	return c.putWeights(ctx, endpoint, "traffic", w, force)
}

func (c *Client) putWeights(ctx context.Context, endpoint, field string, w spec.Weights, force bool) (spec.Weights, error) {
	body, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	var out spec.Weights
	_, err = c.do(ctx, http.MethodPut, endpointPath(endpoint, field), q, body, "application/json", &out)
	return out, err
}

// SetMirror replaces an endpoint's mirror percents and returns them as stored.
func (c *Client) SetMirror(ctx context.Context, endpoint string, w spec.Weights, force bool) (spec.Weights, error) {
	return c.putWeights(ctx, endpoint, "mirror", w, force)
}

// Apply sends a config file (YAML) to be validated whole and applied.
func (c *Client) Apply(ctx context.Context, file []byte, prune bool) (api.ApplyResult, error) {
	var res api.ApplyResult
	q := url.Values{}
	if prune {
		q.Set("prune", "true")
	}
	_, err := c.do(ctx, http.MethodPost, "/api/v1/apply", q, file, "application/yaml", &res)
	return res, err
}

// Metrics reports an endpoint over window (zero asks for the server's
// default, 5m): the fleet's numbers in cluster mode, or replica's alone
// when it is not empty. The answer says which replicas it holds.
func (c *Client) Metrics(ctx context.Context, endpoint string, window time.Duration, replica string) (api.MetricsAnswer, error) {
	var rep api.MetricsAnswer
	err := c.getJSON(ctx, endpointPath(endpoint, "metrics"), fleetQuery(window, replica), &rep)
	return rep, err
}

// fleetQuery is the query of a metrics or shadow call: window (zero: the
// server's default) and replica (empty: the fleet).
func fleetQuery(window time.Duration, replica string) url.Values {
	q := url.Values{}
	if window != 0 {
		q.Set("window", api.FormatWindow(window))
	}
	if replica != "" {
		q.Set("replica", replica)
	}
	return q
}

// EventFilter selects events: those with Seq > Since, of Endpoint only
// when set, at most Limit (oldest first; 0: the server's bound).
type EventFilter struct {
	Since    uint64
	Endpoint string
	Limit    int
}

// Events lists stored events matching f.
func (c *Client) Events(ctx context.Context, f EventFilter) ([]api.Event, error) {
	var out struct {
		Events []api.Event `json:"events"`
	}
	err := c.getJSON(ctx, "/api/v1/events", eventQuery(f), &out)
	return out.Events, err
}

func eventQuery(f EventFilter) url.Values {
	q := url.Values{}
	if f.Endpoint != "" {
		q.Set("endpoint", f.Endpoint)
	}
	if f.Since != 0 {
		q.Set("since", strconv.FormatUint(f.Since, 10))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// StreamEvents follows the event log over server-sent events, calling fn
// for every event with Seq > since (of f.Endpoint's only, when set), until
// ctx ends (then it returns nil) or fn fails. When the server ends the
// stream it reconnects with Last-Event-ID, so no event is missed or
// repeated; a stream that ends again without delivering anything is an
// error.
func (c *Client) StreamEvents(ctx context.Context, f EventFilter, fn func(api.Event) error) error {
	last := f.Since
	for {
		progressed, err := c.streamOnce(ctx, f.Endpoint, last, func(ev api.Event) error {
			last = ev.Seq
			return fn(ev)
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if !progressed {
			return errors.New("event stream: the admin API closed the stream")
		}
	}
}

// streamOnce reads one SSE connection to its end. progressed reports
// whether any event arrived.
func (c *Client) streamOnce(ctx context.Context, endpoint string, since uint64, fn func(api.Event) error) (progressed bool, err error) {
	q := url.Values{}
	if endpoint != "" {
		q.Set("endpoint", endpoint)
	}
	req, err := c.request(ctx, http.MethodGet, "/api/v1/events/stream", q, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if since > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(since, 10))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, c.unreachable(err)
	}
	defer resp.Body.Close()
	c.warn(resp)
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return false, apiError(resp.StatusCode, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			if field == "data" {
				data = append(data, strings.TrimPrefix(value, " "))
			}
			continue // id and event repeat what the data holds; ":" is a comment
		}
		if len(data) == 0 {
			continue
		}
		var ev api.Event
		err := json.Unmarshal([]byte(strings.Join(data, "\n")), &ev)
		data = data[:0]
		if err != nil {
			return progressed, fmt.Errorf("event stream: decode event: %w", err)
		}
		progressed = true
		if err := fn(ev); err != nil {
			return progressed, err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return progressed, fmt.Errorf("event stream: %w", err)
	}
	return progressed, nil
}

// Token tells what the client's token may do (GET /api/v1/token).
func (c *Client) Token(ctx context.Context) (api.TokenInfo, error) {
	var info api.TokenInfo
	err := c.getJSON(ctx, "/api/v1/token", nil, &info)
	return info, err
}
