package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fasthttp"
)

// bodyMode is how a response body is framed on the connection (RFC 9112
// section 6.3).
type bodyMode uint8

const (
	bodyNone       bodyMode = iota // HEAD, 1xx, 204, 304: no body whatever the headers say
	bodyFixed                      // Content-Length
	bodyChunked                    // Transfer-Encoding: chunked
	bodyUntilClose                 // neither: the body ends when the backend closes
)

// bodyReader reads one response body off an upstream connection, undoing
// chunked framing. It never reads past the body, so the connection can
// carry the next exchange.
type bodyReader struct {
	c    *upConn
	mode bodyMode
	// left is what remains of the body (fixed) or of the current chunk
	// (chunked).
	left int64
	// crlf: a chunk's data was read and its closing CRLF was not yet.
	crlf bool
	// idle > 0 bounds every network read to idle nanoseconds from its start
	// (the stream idle timeout) instead of the request deadline.
	idle, idleSlack int64
	// done: the body was read to its end.
	done bool
	// closeAfter: the connection cannot carry another exchange.
	closeAfter bool
	err        error
}

func (b *bodyReader) reset(c *upConn, req *fasthttp.Request, resp *fasthttp.ResponseHeader) {
	*b = bodyReader{c: c, closeAfter: req.Header.ConnectionClose() || resp.ConnectionClose()}
	st := resp.StatusCode()
	switch n := resp.ContentLength(); {
	case req.Header.IsHead() || st < 200 || st == fasthttp.StatusNoContent || st == fasthttp.StatusNotModified:
		b.mode, b.done = bodyNone, true
		if st < 200 { // 101: the connection is no longer HTTP
			b.closeAfter = true
		}
	case n >= 0:
		b.mode, b.left, b.done = bodyFixed, int64(n), n == 0
	case n == -1:
		b.mode = bodyChunked
	default:
		b.mode, b.closeAfter = bodyUntilClose, true
	}
}

// streamIdle switches the remaining reads to the idle timeout d.
func (b *bodyReader) streamIdle(d time.Duration) {
	if d > 0 {
		b.idle, b.idleSlack = int64(d), deadlineSlack(d)
	}
}

// buffered returns the whole body when it is fixed-length and already in
// the read buffer (it came with the headers), else nil, false.
func (b *bodyReader) buffered() ([]byte, bool) {
	if b.mode != bodyFixed || b.left > int64(b.c.br.Buffered()) {
		return nil, false
	}
	p, _ := b.c.br.Peek(int(b.left)) // cannot fail: buffered
	return p, true
}

// consumeBuffered marks the body returned by buffered as read.
func (b *bodyReader) consumeBuffered() {
	_, _ = b.c.br.Discard(int(b.left))
	b.left, b.done = 0, true
}

// Read reads the body. It returns io.EOF at its end and
// io.ErrUnexpectedEOF when the backend closed the connection early.
func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	var (
		n   int
		err error
	)
	switch b.mode {
	case bodyFixed:
		n, err = b.readData(p)
		if b.left == 0 {
			b.done = true
		}
	case bodyUntilClose:
		n, err = b.net(p)
		if err == io.EOF {
			b.done = true
			return n, io.EOF
		}
	case bodyChunked:
		if b.left == 0 {
			if err = b.nextChunk(); err != nil || b.done {
				break
			}
		}
		n, err = b.readData(p)
		if b.left == 0 && err == nil {
			b.crlf = true
		}
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
	}
	if b.done && err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// readData reads up to b.left bytes of body data.
func (b *bodyReader) readData(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.net(p)
	b.left -= int64(n)
	if n > 0 && err == io.EOF && b.left == 0 {
		err = nil
	}
	return n, err
}

// net reads from the connection, under the idle timeout when it is set and
// the read has to wait for the network.
func (b *bodyReader) net(p []byte) (int, error) {
	if err := b.waitNet(); err != nil {
		return 0, err
	}
	return b.c.br.Read(p)
}

func (b *bodyReader) waitNet() error {
	if b.idle > 0 && b.c.br.Buffered() == 0 {
		return b.c.setDeadline(time.Now().UnixNano()+b.idle, b.idleSlack)
	}
	return nil
}

// errChunk is a malformed chunked body.
var errChunk = errors.New("malformed chunked body")

// nextChunk reads the end of the previous chunk and the next chunk's size
// line; after the last chunk it reads the trailer section and sets done.
func (b *bodyReader) nextChunk() error {
	if b.crlf {
		line, err := b.line()
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) != 0 {
			return fmt.Errorf("%w: no CRLF after chunk data", errChunk)
		}
		b.crlf = false
	}
	line, err := b.line()
	if err != nil {
		return err
	}
	size, err := chunkSize(line)
	if err != nil {
		return err
	}
	if size > 0 {
		b.left = size
		return nil
	}
	// Last chunk: trailer fields up to an empty line. They are not
	// forwarded (a response whose trailers matter is rare, and the client
	// side already sent its headers).
	for {
		line, err := b.line()
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			b.done = true
			return nil
		}
	}
}

// line reads one line (up to the buffer size) including its "\n".
func (b *bodyReader) line() ([]byte, error) {
	if err := b.waitNet(); err != nil {
		return nil, err
	}
	line, err := b.c.br.ReadSlice('\n')
	if err == nil {
		return line, nil
	}
	if errors.Is(err, io.EOF) {
		return nil, io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("%w: %w", errChunk, err)
}

// chunkSize parses a chunk size line: hex digits, then optional
// extensions after ';', then CRLF.
func chunkSize(line []byte) (int64, error) {
	line = bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, fmt.Errorf("%w: bad chunk size %q", errChunk, line)
	}
	var n int64
	for _, ch := range line {
		var d byte
		switch {
		case '0' <= ch && ch <= '9':
			d = ch - '0'
		case 'a' <= ch && ch <= 'f':
			d = ch - 'a' + 10
		case 'A' <= ch && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: bad chunk size %q", errChunk, line)
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}
