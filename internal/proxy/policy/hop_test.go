package policy

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// hopCases are header blocks (after the start line) that exercise the
// hop-by-hop stripping: plain, every hop header, Connection lists naming
// special headers, cookies, trailers, odd case and duplicates.
var hopCases = []string{
	"Host: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n",
	"Host: a\r\nContent-Length: 2\r\nConnection: close\r\n",
	"Host: a\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n",
	"Host: a\r\nContent-Length: 2\r\nconnection: X-Hop, x-other ,,Te\r\nX-Hop: 1\r\nX-Other: 2\r\nX-Keep: 3\r\nTE: trailers\r\n",
	"Host: a\r\nContent-Length: 2\r\nProxy-Authorization: Basic Zm9v\r\nProxy-Authenticate: x\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n",
	"Host: a\r\nContent-Length: 2\r\nConnection: Content-Type, Host, Cookie, Trailer, Connection\r\nContent-Type: text/plain\r\nCookie: a=1;b=2\r\n",
	"Host: a\r\nContent-Length: 2\r\nCookie: a=1;b=2\r\nCookie: c=3\r\nKeep-Alive: 1\r\nX-A: b\r\n",
	"Host: a\r\nContent-Length: 2\r\nCookie:\r\nTe: trailers\r\n",
	"Host: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Hop\r\nConnection: X-Hop\r\nX-Hop: 1\r\n",
	"Host: a\r\nContent-Length: 2\r\nConnection: keep-alive, close\r\nX-Forwarded-For: 10.0.0.1\r\nExpect: 100-continue\r\n",
	"Host: a\r\nContent-Length: 2\r\nSet-Cookie: s=1\r\nServer: backend\r\nContent-Encoding: gzip\r\nConnection: Server, Set-Cookie, Content-Encoding, Content-Length\r\n",
}

// stripRequestReference is the per-name stripping the one-pass version must
// equal.
func stripRequestReference(h *fasthttp.RequestHeader, scratch *[]byte) {
	stripHopHeaders(h, scratch)
	h.DelBytes(hdrExpect)
}

func TestStripHopHeadersOnePassSameAsPerName(t *testing.T) {
	var scratch []byte
	for _, c := range hopCases {
		for _, method := range []string{"POST", "GET"} {
			raw := method + " /p HTTP/1.1\r\n" + c + "\r\n"
			var want, got fasthttp.RequestHeader
			if err := want.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatalf("%q: %v", raw, err)
			}
			if err := got.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatal(err)
			}
			stripRequestReference(&want, &scratch)
			StripRequestHopHeaders(&got, &scratch)
			if w, g := want.String(), got.String(); w != g || want.ConnectionClose() != got.ConnectionClose() {
				t.Errorf("request %q:\nper name: %q (close %v)\none pass: %q (close %v)", raw, w, want.ConnectionClose(), g, got.ConnectionClose())
			}
		}

		raw := "HTTP/1.1 200 OK\r\n" + c + "\r\n"
		var parsed, want, got fasthttp.ResponseHeader
		if err := parsed.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		// As in respond: the backend's header is copied, then stripped.
		parsed.CopyTo(&want)
		parsed.CopyTo(&got)
		stripHopHeaders(&want, &scratch)
		StripResponseHopHeaders(&got, &scratch)
		if w, g := want.String(), got.String(); w != g || want.ConnectionClose() != got.ConnectionClose() {
			t.Errorf("response %q:\nper name: %q (close %v)\none pass: %q (close %v)", raw, w, want.ConnectionClose(), g, got.ConnectionClose())
		}
		if bytes.Contains(got.Header(), []byte("Keep-Alive:")) {
			t.Errorf("response %q: Keep-Alive forwarded", raw)
		}
	}
}

func TestHopBitMatchesHopHeaders(t *testing.T) {
	for i, k := range hopHeaders {
		if hopBit(k) != 1<<i {
			t.Errorf("hopBit(%q) = %b, want %b", k, hopBit(k), 1<<i)
		}
	}
	if hopBit(hdrConnection) != hopConnection || hopConnection != 1<<len(hopHeaders) || hopBit(hdrExpect) != hopExpect {
		t.Error("Connection and Expect bits")
	}
	if hopBit([]byte("Trailer")) != hopTrailer {
		t.Error("Trailer bit")
	}
}

// TestStripHopHeadersOnePassTrailers: chunked messages whose trailer section
// holds values, including ones named in Connection.
func TestStripHopHeadersOnePassTrailers(t *testing.T) {
	var scratch []byte
	body := "Transfer-Encoding: chunked\r\nTrailer: X-Sum, X-Hop\r\nConnection: X-Hop, X-Sum\r\nKeep-Alive: 1\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 9\r\nX-Hop: 1\r\n\r\n"
	raw := "POST /p HTTP/1.1\r\nHost: a\r\n" + body
	var want, got fasthttp.Request
	if err := want.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	if err := got.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	stripRequestReference(&want.Header, &scratch)
	StripRequestHopHeaders(&got.Header, &scratch)
	if w, g := want.String(), got.String(); w != g {
		t.Errorf("request:\nper name: %q\none pass: %q", w, g)
	}

	raw = "HTTP/1.1 200 OK\r\n" + body
	var parsed fasthttp.Response
	if err := parsed.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var wantH, gotH fasthttp.ResponseHeader
	parsed.Header.CopyTo(&wantH)
	parsed.Header.CopyTo(&gotH)
	stripHopHeaders(&wantH, &scratch)
	StripResponseHopHeaders(&gotH, &scratch)
	if w, g := wantH.String()+string(wantH.TrailerHeader()), gotH.String()+string(gotH.TrailerHeader()); w != g {
		t.Errorf("response:\nper name: %q\none pass: %q", w, g)
	}
}

// BenchmarkStripHopHeaders compares the one-pass stripping with the scan per
// name on typical headers: a wrk-like request, an nginx-like response.
func BenchmarkStripHopHeaders(b *testing.B) {
	const reqRaw = "POST /fraud/predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: 34\r\nX-Request-Id: abc\r\n\r\n"
	const respRaw = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 03:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 27\r\nConnection: keep-alive\r\n\r\n"
	var req fasthttp.RequestHeader
	var resp fasthttp.ResponseHeader
	if err := req.Read(bufio.NewReader(strings.NewReader(reqRaw))); err != nil {
		b.Fatal(err)
	}
	if err := resp.Read(bufio.NewReader(strings.NewReader(respRaw))); err != nil {
		b.Fatal(err)
	}
	var scratch []byte
	var rh fasthttp.RequestHeader
	var sh fasthttp.ResponseHeader
	b.Run("per-name", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req.CopyTo(&rh)
			resp.CopyTo(&sh)
			stripRequestReference(&rh, &scratch)
			stripHopHeaders(&sh, &scratch)
		}
	})
	b.Run("one-pass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req.CopyTo(&rh)
			resp.CopyTo(&sh)
			StripRequestHopHeaders(&rh, &scratch)
			StripResponseHopHeaders(&sh, &scratch)
		}
	})
}

func TestHeaderNamesAreCanonical(t *testing.T) {
	// They are set with SetCanonical, which trusts the name's form.
	for _, name := range [][]byte{hdrForwardedFor, hdrForwardedProto, hdrForwardedHost, hdrForwarded, hdrRealIP, hdrConnection, hdrExpect} {
		if c := http.CanonicalHeaderKey(string(name)); c != string(name) {
			t.Errorf("header name %q is not canonical (%q)", name, c)
		}
	}
}
