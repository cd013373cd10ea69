package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Peer is another gateway of the fleet.
type Peer struct {
	ID       string `json:"id"`
	AdminURL string `json:"admin_url"`
}

// MaxAnswerBytes bounds what a call reads of a replica's answer.
const MaxAnswerBytes = 16 << 20

// CallTimeout bounds one call to a replica, connection included.
const CallTimeout = 5 * time.Second

// Client calls the other replicas' admin APIs with the fleet's admin token
// (every replica reads the same token files, docs/cluster.md).
type Client struct {
	http  *http.Client
	token func() string
}

// NewClient returns a Client that trusts tlsCfg for https replicas (nil:
// the system's roots) and sends token() as the bearer token.
func NewClient(tlsCfg *tls.Config, token func() string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 4
	return &Client{http: &http.Client{Transport: tr, Timeout: CallTimeout,
		// A replica never redirects; one that does is not followed with
		// the token.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		token: token}
}

// Close closes the client's idle connections (the daemon stopping).
func (c *Client) Close() { c.http.CloseIdleConnections() }

// CallError is a replica's answer other than 2xx.
type CallError struct {
	Peer    string
	Status  int
	Message string
}

func (e *CallError) Error() string {
	return fmt.Sprintf("replica %s answered %d: %s", e.Peer, e.Status, e.Message)
}

// Call sends method path (with its query) to p, with in as JSON (nil: no
// body), and decodes the answer into out (nil: drained). token, when not
// empty, is sent instead of the client's own (a fleet-wide read answers
// with the rights of the caller's token).
func (c *Client) Call(ctx context.Context, p Peer, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode the call to replica %s: %w", p.ID, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(p.AdminURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("call replica %s at %q: %w", p.ID, p.AdminURL, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token == "" {
		token = c.token()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("call replica %s: %w", p.ID, err)
	}
	defer resp.Body.Close()
	r := io.LimitReader(resp.Body, MaxAnswerBytes+1)
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &CallError{Peer: p.ID, Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, r)
		return nil
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read replica %s's answer: %w", p.ID, err)
	}
	if len(b) > MaxAnswerBytes {
		return fmt.Errorf("replica %s's answer is over %d bytes", p.ID, MaxAnswerBytes)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("replica %s's answer: %w", p.ID, err)
	}
	return nil
}
