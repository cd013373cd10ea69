package policy

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzTargetPath: whatever the client's path, the one sent upstream starts
// with the backend's prefix, holds no dot segment (plain or encoded), and
// resolving it again changes nothing.
func FuzzTargetPath(f *testing.F) {
	for _, s := range []string{"/v1/models/m:predict?x=1", "/a/../b", "/../../admin", "/%2e%2E/x", "/a/..%2fb", "/..;/x", "/a\\..\\b", "", "?q=/../"} {
		f.Add(s)
	}
	const prefix = "/models/fraud"
	f.Fuzz(func(t *testing.T, rest string) {
		got, err := TargetPath(nil, []byte(prefix), []byte(rest))
		if err != nil {
			return
		}
		path, _, _ := bytes.Cut(got, []byte{'?'})
		if !bytes.HasPrefix(path, []byte(prefix+"/")) {
			t.Fatalf("TargetPath(%q) = %q: not under %s/", rest, got, prefix)
		}
		for _, seg := range strings.Split(string(path), "/") {
			if dots([]byte(seg)) > 0 {
				t.Fatalf("TargetPath(%q) = %q: dot segment %q", rest, got, seg)
			}
		}
		again, err := TargetPath(nil, nil, got[len(prefix):])
		if err != nil || !bytes.Equal(again, got[len(prefix):]) {
			t.Fatalf("TargetPath(%q) = %q, resolved again: %q, %v", rest, got, again, err)
		}
	})
}

// FuzzHeadEnd: HeadEnd never reads past buf, and what it frames ends with
// an empty line.
func FuzzHeadEnd(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", "GET / HTTP/1.1\nHost: a\n\n", "\r\n\r\n", "x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		end := HeadEnd(buf)
		if end < 0 {
			return
		}
		head := buf[:end]
		if !bytes.HasSuffix(head, []byte("\n\n")) && !bytes.HasSuffix(head, []byte("\n\r\n")) {
			t.Fatalf("HeadEnd(%q) = %d: %q does not end with an empty line", buf, end, head)
		}
		if k := LeadingEmptyLines(buf); k > len(buf) {
			t.Fatalf("LeadingEmptyLines(%q) = %d > len", buf, k)
		}
	})
}

// FuzzCheckResponseHead: any bytes, no panic; an accepted head has a
// status line of HTTP/1.x with a status 100-599.
func FuzzCheckResponseHead(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "HTTP/1.0 101 x\r\n\r\n", "HTTP/0.1 000 x\r\n\r\n", "HTTP/1.1 200 OK\nA: b\n\n"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, upgrade bool) {
		if CheckResponseHead(raw, upgrade) != nil {
			return
		}
		if _, ok := statusLine(raw[:max(bytes.IndexByte(raw, '\n'), 0)]); !ok {
			t.Fatalf("CheckResponseHead(%q) accepted a bad status line", raw)
		}
	})
}
