package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Backend is a real HTTP server standing in for a model server; it counts
// the requests it served and the connections it accepted, and closes when
// the test ends.
type Backend struct {
	srv    *httptest.Server
	served atomic.Int64
	conns  atomic.Int64
}

// URL is the backend's base URL, for a config's backends list.
func (b *Backend) URL() string { return b.srv.URL }

// Served is how many requests the backend has received.
func (b *Backend) Served() int64 { return b.served.Load() }

// Conns is how many connections the backend has accepted.
func (b *Backend) Conns() int64 { return b.conns.Load() }

func newBackend(t testing.TB, handle func(b *Backend, w http.ResponseWriter, r *http.Request)) *Backend {
	t.Helper()
	b := &Backend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(b, w, r) }))
	b.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

// NewEcho starts a backend that answers every request at once with JSON
// saying what it was asked: {"predictions":[1],"served_by":name,"path",
// "query","body_len","request_id"}.
func NewEcho(t testing.TB, name string) *Backend {
	t.Helper()
	return newBackend(t, func(b *Backend, w http.ResponseWriter, r *http.Request) {
		b.served.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"predictions":[1],"served_by":%q,"path":%q,"query":%q,"body_len":%d,"request_id":%q}`,
			name, r.URL.Path, r.URL.RawQuery, len(body), r.Header.Get("X-Request-Id"))
	})
}

// Model says how a model backend answers. Everything it does is decided by
// the request's number, n (1 for the first), so that runs repeat exactly.
// The zero Model answers {"predictions":[1]} at once, every time.
type Model struct {
	// Answer is the JSON body of an answer. Empty: {"predictions":[1]}.
	Answer string
	// DisagreeEvery makes every DisagreeEvery-th answer Disagree instead
	// of Answer. Zero: never.
	DisagreeEvery int64
	// Disagree is the other answer.
	Disagree string
	// FailEvery makes every FailEvery-th request a 500. Zero: never.
	FailEvery int64
	// Delay is the model's own latency; Jitter adds up to as much again,
	// by n. The client leaving cuts it short.
	Delay, Jitter time.Duration
	// Broken, when set and true, fails every request with a 500: a model
	// that breaks at the moment the test chooses.
	Broken *atomic.Bool
}

// NewModel starts a backend that answers as m says.
func NewModel(t testing.TB, m Model) *Backend {
	t.Helper()
	if m.Answer == "" {
		m.Answer = `{"predictions":[1]}`
	}
	return newBackend(t, func(b *Backend, w http.ResponseWriter, r *http.Request) {
		n := b.served.Add(1)
		io.Copy(io.Discard, r.Body)
		if d := m.Delay + time.Duration(n*7919%101)*m.Jitter/100; d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case m.Broken != nil && m.Broken.Load(), m.FailEvery > 0 && n%m.FailEvery == 0:
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"model failed"}`))
		case m.DisagreeEvery > 0 && n%m.DisagreeEvery == 0:
			w.Write([]byte(m.Disagree))
		default:
			w.Write([]byte(m.Answer))
		}
	})
}
