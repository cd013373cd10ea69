// Package accesslog is the data plane's access log: one line per request
// the gateway answered. A line is formatted on the request's own goroutine
// (or event loop) into a pooled buffer and queued; one goroutine writes
// the queue out. The data plane never waits for the writer: with Buffer
// lines queued, a new line is dropped and counted (Dropped), as nginx's
// buffered access_log does not, and HAProxy's UDP log does.
package accesslog

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Format is how a line is written.
type Format uint8

const (
	// Text is key=value pairs, as log/slog's TextHandler writes them.
	Text Format = iota
	// JSON is one JSON object a line, as log/slog's JSONHandler writes them.
	JSON
)

// ParseFormat reads "text" or "json".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text":
		return Text, nil
	case "json":
		return JSON, nil
	}
	return Text, fmt.Errorf("%q: want text or json", s)
}

// String is the format's name.
func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "text"
}

// DefaultBuffer is how many lines may wait for the writer when
// Options.Buffer is zero; MaxBuffer is the most Options.Buffer may be.
const (
	DefaultBuffer = 4096
	MaxBuffer     = 1 << 20
)

// maxPooled is the largest line buffer kept for reuse: a line with a
// long path does not pin its room.
const maxPooled = 16 << 10

// Entry is what one line says. Its byte slices are read only during
// Log.Add, never kept.
type Entry struct {
	// Time is when the request ended.
	Time time.Time
	// Client is the client connection's remote address (nil: unknown).
	Client net.Addr
	// Method and Path are the request's, as the client sent them; Path
	// stops before the query, which is not logged.
	Method, Path []byte
	// Endpoint and Deployment are where the request went; empty for a
	// request refused before (unknown endpoint, malformed request).
	Endpoint, Deployment string
	// Status is the answer's status (499: the client left first).
	Status int
	// Bytes is the answer's body bytes passed to the client.
	Bytes int64
	// Duration is from the request's arrival to its end.
	Duration time.Duration
	// RequestID is the request's X-Request-Id (the client's, or the one
	// the gateway made).
	RequestID []byte
}

// AppendLine appends e's line, ending in a newline, to dst in format f.
// It allocates nothing of its own.
func AppendLine(dst []byte, f Format, e *Entry) []byte {
	if f == JSON {
		return appendJSON(dst, e)
	}
	return appendText(dst, e)
}

func appendText(b []byte, e *Entry) []byte {
	b = append(b, "time="...)
	b = e.Time.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " level=INFO msg=access client="...)
	var addr [64]byte
	b = appendTextValue(b, appendAddr(addr[:0], e.Client))
	b = append(b, " method="...)
	b = appendTextValue(b, e.Method)
	b = append(b, " path="...)
	b = appendTextValue(b, e.Path)
	b = append(b, " endpoint="...)
	b = appendTextString(b, e.Endpoint)
	b = append(b, " deployment="...)
	b = appendTextString(b, e.Deployment)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, " duration_ms="...)
	b = strconv.AppendFloat(b, float64(e.Duration)/1e6, 'f', 3, 64)
	b = append(b, " request_id="...)
	b = appendTextValue(b, e.RequestID)
	return append(b, '\n')
}

func appendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"access","client":`...)
	var addr [64]byte
	b = appendJSONString(b, appendAddr(addr[:0], e.Client))
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"endpoint":`...)
	b = appendJSONText(b, e.Endpoint)
	b = append(b, `,"deployment":`...)
	b = appendJSONText(b, e.Deployment)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration)/1e6, 'f', 3, 64)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.RequestID)
	return append(b, "}\n"...)
}

// appendAddr appends a client address: host:port for a TCP one, without
// allocating; any other kind as its String.
func appendAddr(b []byte, a net.Addr) []byte {
	switch ta := a.(type) {
	case nil:
		return b
	case *net.TCPAddr:
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(b)
	default:
		return append(b, a.String()...)
	}
}

// appendTextValue writes v as slog's TextHandler writes a string: bare,
// or quoted when empty or holding a space, '=', '"', a control character
// or invalid UTF-8.
func appendTextValue(b, v []byte) []byte {
	if !needsQuoting(v) {
		return append(b, v...)
	}
	return strconv.AppendQuote(b, string(v)) // no allocation: the conversion does not escape
}

func appendTextString(b []byte, s string) []byte {
	if !needsQuoting([]byte(s)) {
		return append(b, s...)
	}
	return strconv.AppendQuote(b, s)
}

func needsQuoting(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return true
		}
		i += n
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes v as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b, v []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, v[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

func appendJSONText(b []byte, s string) []byte {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' || r >= utf8.RuneSelf }) < 0 {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	return appendJSONString(b, []byte(s))
}

// Options configure a Log.
type Options struct {
	// Format is the lines' format.
	Format Format
	// Buffer is how many lines may wait for the writer; past it a line is
	// dropped and counted. Zero: DefaultBuffer.
	Buffer int
	// OnWriteError is called (from the writer's goroutine) with the first
	// write error after a successful write, so that a failing file is
	// reported once, not once a line. Nil: not reported.
	OnWriteError func(error)
}

// Log is an access log. Add queues a line without waiting; the writer
// goroutine started by New writes the queue to its destination.
type Log struct {
	format  Format
	lines   chan *[]byte
	pool    sync.Pool
	dropped atomic.Uint64
	written atomic.Uint64
	onErr   func(error)
	dst     io.Writer
	w       *bufio.Writer
	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// New starts a Log writing to w until Close.
func New(w io.Writer, opts Options) *Log {
	n := opts.Buffer
	if n <= 0 {
		n = DefaultBuffer
	}
	l := &Log{
		format: opts.Format,
		lines:  make(chan *[]byte, n),
		onErr:  opts.OnWriteError,
		dst:    w,
		w:      bufio.NewWriterSize(w, 64<<10),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	l.pool.New = func() any {
		b := make([]byte, 0, 512)
		return &b
	}
	go l.run()
	return l
}

// Format is the format of the log's lines.
func (l *Log) Format() Format { return l.format }

// Buffer is how many lines may wait for the writer.
func (l *Log) Buffer() int { return cap(l.lines) }

// Add formats e's line and queues it for the writer. It never waits: with
// the queue full the line is dropped and counted.
func (l *Log) Add(e *Entry) {
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	bp := l.pool.Get().(*[]byte)
	*bp = AppendLine((*bp)[:0], l.format, e)
	select {
	case l.lines <- bp:
	default:
		l.dropped.Add(1)
		l.put(bp)
	}
}

func (l *Log) put(bp *[]byte) {
	if cap(*bp) <= maxPooled {
		l.pool.Put(bp)
	}
}

// Dropped is how many lines were lost: dropped because the writer fell
// Buffer lines behind, or not written because the destination failed.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Written is how many lines reached the destination.
func (l *Log) Written() uint64 { return l.written.Load() }

// run writes the queued lines through a 64 KiB buffer, flushed whenever
// the queue is empty, until Close.
func (l *Log) run() {
	defer close(l.done)
	failing := false
	var pending uint64 // lines in the buffer, not flushed yet
	flush := func() {
		if pending == 0 {
			return
		}
		if err := l.w.Flush(); err != nil {
			// bufio keeps its error: start again on the destination.
			l.dropped.Add(pending)
			l.w.Reset(l.dst)
			if !failing && l.onErr != nil {
				l.onErr(err)
			}
			failing = true
		} else {
			l.written.Add(pending)
			failing = false
		}
		pending = 0
	}
	write := func(bp *[]byte) {
		if l.w.Available() < len(*bp) {
			flush()
		}
		_, _ = l.w.Write(*bp)
		pending++
		l.put(bp)
	}
	for {
		select {
		case bp := <-l.lines:
			write(bp)
			if len(l.lines) == 0 {
				flush()
			}
		case <-l.stop:
			for {
				select {
				case bp := <-l.lines:
					write(bp)
				default:
					flush()
					return
				}
			}
		}
	}
}

// Close writes the lines queued, stops the writer and returns once it
// has. Lines added after Close are dropped and counted. It does not close
// the destination.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
	})
	<-l.done
	return nil
}
