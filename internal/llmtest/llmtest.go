// Package llmtest is an OpenAI-compatible chat completions server for
// tests: it answers POST /v1/chat/completions with a fixed answer, streamed
// as server-sent events when the request asks for "stream": true, with a
// configurable wait before the first token and between tokens. Two servers
// with the same Answer answer alike; with different ones, differently.
//
// A streamed answer is the SSE form vLLM and OpenAI send:
//
//	data: {"id":"chatcmpl-1","object":"chat.completion.chunk",...,"choices":[{"index":0,"delta":{"role":"assistant","content":"The "},"finish_reason":null}]}
//
//	data: {...,"choices":[{"index":0,"delta":{"content":"answer "},"finish_reason":null}]}
//
//	data: {...,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}
//
//	data: [DONE]
//
// The response headers leave with the first token (net/http sends them at
// the first flush), unless Options.EarlyHeaders sends them at once, as
// servers that start the response before generating do.
package llmtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/ctxtime"
)

// Options configures a Handler. The zero value answers "Hello from
// llmtest." at once.
type Options struct {
	// Model is the model name answered in "model". Empty: "llmtest".
	Model string
	// Answer is the assistant's whole answer. It is cut into tokens at
	// spaces, each token keeping its trailing space ("tok "). Empty:
	// "Hello from llmtest."
	Answer string
	// FirstTokenDelay is the wait before the first token (for a
	// non-streamed answer, before anything is sent). Zero: none.
	FirstTokenDelay time.Duration
	// TokenDelay is the wait between two tokens. Zero: none.
	TokenDelay time.Duration
	// Hold, when not nil, stops every streamed answer after its first
	// token until Hold is closed (or the client goes away).
	Hold <-chan struct{}
	// EarlyHeaders sends the status and headers of a streamed answer
	// before waiting for the first token. False: they leave with it.
	EarlyHeaders bool
}

// Handler serves the chat completions API. It is safe for concurrent use.
type Handler struct {
	opts   Options
	tokens []string
	// started, firstSent and finished count answers: begun, with their
	// first token sent, and sent whole.
	started, firstSent, finished atomic.Int64
	ids                          atomic.Int64
}

// NewHandler returns a Handler answering as opts says.
func NewHandler(opts Options) *Handler {
	if opts.Model == "" {
		opts.Model = "llmtest"
	}
	if opts.Answer == "" {
		opts.Answer = "Hello from llmtest."
	}
	return &Handler{opts: opts, tokens: Tokens(opts.Answer)}
}

// Tokens cuts answer into the tokens a Handler streams: words, each with
// the spaces that follow it. Concatenated they give answer back.
func Tokens(answer string) []string {
	var out []string
	for answer != "" {
		i := strings.IndexByte(answer, ' ')
		if i < 0 {
			out = append(out, answer)
			break
		}
		j := i
		for j < len(answer) && answer[j] == ' ' {
			j++
		}
		out = append(out, answer[:j])
		answer = answer[j:]
	}
	return out
}

// Started counts the answers begun (valid requests received).
func (h *Handler) Started() int64 { return h.started.Load() }

// FirstTokens counts the answers whose first token was sent.
func (h *Handler) FirstTokens() int64 { return h.firstSent.Load() }

// Finished counts the answers sent whole (the last chunk and [DONE] of a
// stream, or the JSON document).
func (h *Handler) Finished() int64 { return h.finished.Load() }

// request is the part of a chat completions request the Handler reads.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// ServeHTTP answers POST /v1/chat/completions (and /chat/completions);
// anything else is 404, a body that is not JSON 400.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" && r.URL.Path != "/chat/completions" {
		writeError(w, http.StatusNotFound, "no route "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body is not a chat completions request: "+err.Error())
		return
	}
	h.started.Add(1)
	id := fmt.Sprintf("chatcmpl-llmtest-%d", h.ids.Add(1))
	created := time.Now().Unix()
	if !req.Stream {
		h.answerWhole(w, r, id, created)
		return
	}
	h.stream(w, r, req, id, created)
}

// answerWhole sends the non-streamed answer after as long as streaming
// it would have taken.
func (h *Handler) answerWhole(w http.ResponseWriter, r *http.Request, id string, created int64) {
	wait := h.opts.FirstTokenDelay + time.Duration(max(len(h.tokens)-1, 0))*h.opts.TokenDelay
	if !ctxtime.Sleep(r.Context(), wait) {
		return
	}
	h.firstSent.Add(1)
	doc := map[string]any{
		"id": id, "object": "chat.completion", "created": created, "model": h.opts.Model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": h.opts.Answer},
			"finish_reason": "stop",
		}},
		"usage": h.usage(),
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(doc)
	h.finished.Add(1)
}

func (h *Handler) usage() map[string]int {
	return map[string]int{"prompt_tokens": 8, "completion_tokens": len(h.tokens), "total_tokens": 8 + len(h.tokens)}
}

// stream sends the answer as SSE chunks, one token each, flushed one by
// one.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, req request, id string, created int64) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "response writer cannot flush")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	if h.opts.EarlyHeaders {
		w.WriteHeader(http.StatusOK)
		fl.Flush()
	}
	chunk := func(delta map[string]any, finish any) bool {
		doc := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": h.opts.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
		raw, _ := json.Marshal(doc)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", raw); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !ctxtime.Sleep(r.Context(), h.opts.FirstTokenDelay) {
		return
	}
	for i, tok := range h.tokens {
		if i > 0 && !ctxtime.Sleep(r.Context(), h.opts.TokenDelay) {
			return
		}
		delta := map[string]any{"content": tok}
		if i == 0 {
			delta["role"] = "assistant"
			// Counted before it leaves: a client that read it sees it counted.
			h.firstSent.Add(1)
		}
		if !chunk(delta, nil) {
			return
		}
		if i == 0 {
			if h.opts.Hold != nil {
				select {
				case <-h.opts.Hold:
				case <-r.Context().Done():
					return
				}
			}
		}
	}
	if !chunk(map[string]any{}, "stop") {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		raw, _ := json.Marshal(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": h.opts.Model,
			"choices": []any{}, "usage": h.usage(),
		})
		fmt.Fprintf(w, "data: %s\n\n", raw)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	h.finished.Add(1) // before the flush, as the first token is
	fl.Flush()
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": msg, "type": "invalid_request_error"}})
}

// Server is a Handler listening on a loopback port (an httptest.Server).
type Server struct {
	*Handler
	srv *httptest.Server
}

// NewServer starts a Server answering as opts says. Close it when done.
func NewServer(opts Options) *Server {
	h := NewHandler(opts)
	return &Server{Handler: h, srv: httptest.NewServer(h)}
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server, cutting streams still running.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Assemble reads a streamed chat completions answer to its end and
// returns the text of its first choice (every delta.content in order) and
// how many data chunks carried content. It fails on a chunk that is not
// JSON or a stream that ends without data: [DONE].
func Assemble(r io.Reader) (text string, chunks int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var b strings.Builder
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data:")
		if !ok {
			continue
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			return b.String(), chunks, nil
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return b.String(), chunks, fmt.Errorf("chunk %q: %w", data, err)
		}
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
			b.WriteString(c.Choices[0].Delta.Content)
			chunks++
		}
	}
	if err := sc.Err(); err != nil {
		return b.String(), chunks, err
	}
	return b.String(), chunks, errors.New("stream ended without data: [DONE]")
}
