package policy

import "testing"

func TestTargetPath(t *testing.T) {
	for _, c := range []struct{ prefix, rest, want string }{
		{"", "/v1/m?x=1", "/v1/m?x=1"},
		{"/models/fraud", "/v1/m", "/models/fraud/v1/m"},
		{"/models/fraud", "", "/models/fraud/"},
		{"/models/fraud", "?q", "/models/fraud/?q"},
		{"/models/fraud", "/a/../b", "/models/fraud/b"},
		{"/models/fraud", "/a/./b/.", "/models/fraud/a/b/"},
		{"/models/fraud", "/a/%2E%2e/b?x=/../", "/models/fraud/b?x=/../"},
		{"/models/fraud", "/a/..", "/models/fraud/"},
		{"/models/fraud", "/..a/.b/...", "/models/fraud/..a/.b/..."},
		{"/p", "/a//../b", "/p/a/b"},
		{"", "/.", "/"},
		{"/p", "/a;v=1/b%2Fc", "/p/a;v=1/b%2Fc"},
	} {
		got, err := TargetPath(nil, []byte(c.prefix), []byte(c.rest))
		if err != nil || string(got) != c.want {
			t.Errorf("TargetPath(%q, %q) = %q, %v; want %q", c.prefix, c.rest, got, err, c.want)
		}
	}
	for _, rest := range []string{"/../../admin", "/..", "/%2e%2e/x", "/a/../../b", "/.%2E/x",
		"/..%2f..%2fadmin", "/a/..%5Cb", "/..;/admin", "/a\\..\\..\\b", "/%2e%2e;x/y", "/a/..%2fb"} {
		if got, err := TargetPath(nil, []byte("/models/fraud"), []byte(rest)); err == nil {
			t.Errorf("TargetPath(%q) = %q, want a 400", rest, got)
		}
	}
}

func TestHeadEnd(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 27},
		{"GET / HTTP/1.1\nHost: a\n\nbody", 24},
		{"GET / HTTP/1.1\r\nHost: a\n\r\n", 26},
		{"GET / HTTP/1.1\r\nHost: a\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", -1},
		{"", -1},
	} {
		if got := HeadEnd([]byte(c.in)); got != c.want {
			t.Errorf("HeadEnd(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
