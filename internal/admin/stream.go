package admin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// stream serves GET /api/v1/events/stream as server-sent events: each
// event is "id: <seq>", "event: <type>", "data: <event JSON>". It starts
// after the Last-Event-ID header (or ?since=), so a client that reconnects
// misses nothing, keeps the connection alive with a comment every
// keepAlive, and ends when the client goes. ?endpoint= keeps one
// endpoint's events.
func (s *server) stream(w http.ResponseWriter, r *http.Request) {
	since, err := streamStart(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	endpoint := r.URL.Query().Get("endpoint")
	ctx := r.Context()
	events, err := s.backend.WatchEvents(ctx, since)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	rc := http.NewResponseController(w)
	// The stream outlives any write timeout the server sets for ordinary
	// calls; not every ResponseWriter supports deadlines, which is fine.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell nginx-like proxies not to buffer
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	flush := func() bool {
		return bw.Flush() == nil && rc.Flush() == nil
	}
	// Send the headers now: the client knows the stream is open before
	// the first event.
	if _, err := bw.WriteString(": stream open\n\n"); err != nil || !flush() {
		return
	}

	keepAlive := time.NewTicker(s.keepAlive)
	defer keepAlive.Stop()
	last := since
	delivered := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepAlive.C:
			if _, err := bw.WriteString(": keep-alive\n\n"); err != nil || !flush() {
				return
			}
		case ev, ok := <-events:
			if !ok {
				// The watch ended early (a slow consumer is cut off).
				// Resume from the last event sent if this watch made
				// progress; otherwise end the response and let the client
				// reconnect with Last-Event-ID, rather than spin.
				if ctx.Err() != nil || !delivered {
					return
				}
				if events, err = s.backend.WatchEvents(ctx, last); err != nil {
					if ctx.Err() == nil {
						s.log.Warn("event stream: resume watch", "since", last, "err", err)
					}
					return
				}
				delivered = false
				continue
			}
			if ev.Seq <= last {
				continue // never send an event twice after a resume
			}
			last, delivered = ev.Seq, true
			if endpoint != "" && ev.Endpoint != endpoint {
				continue
			}
			if err := writeEvent(bw, ev); err != nil {
				s.log.Error("event stream: encode event", "seq", ev.Seq, "err", err)
				return
			}
			if !flush() {
				return
			}
		}
	}
}

// streamStart returns the sequence number to stream after: the
// Last-Event-ID header when present (a reconnecting EventSource sends it),
// else ?since=, else 0 (the whole log).
func streamStart(r *http.Request) (uint64, error) {
	field, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if v == "" {
		field, v = "since", r.URL.Query().Get("since")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, spec.Problemf(field, "%q is not an event sequence number", v)
	}
	return n, nil
}

// writeEvent writes one SSE message. json.Marshal escapes control
// characters, so the data is a single line. Write errors surface at the
// flush that follows.
func writeEvent(w *bufio.Writer, ev store.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	typ := ev.Type
	if typ == "" || strings.ContainsAny(typ, "\r\n") {
		typ = "message"
	}
	fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, typ, data)
	return nil
}
