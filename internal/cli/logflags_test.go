package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// TestServeLogFlags: serve's --log-format and --log-level reach the
// daemon as given, and a bad value is a usage error naming the values
// accepted, before the daemon starts.
func TestServeLogFlags(t *testing.T) {
	old := Serve
	t.Cleanup(func() { Serve = old })
	var got *ServeOptions
	Serve = func(ctx context.Context, opts ServeOptions, stdout, stderr io.Writer) error {
		got = &opts
		return nil
	}
	serve := func(args ...string) (int, string) {
		t.Helper()
		got = nil
		var out, errOut bytes.Buffer
		code := run(t.Context(), append([]string{"serve"}, args...), &out, &errOut, func(string) string { return "" }, nil)
		return code, errOut.String()
	}
	if code, errOut := serve("-c", "mg.yaml", "--log-format", "json", "--log-level", "debug"); code != 0 || got == nil ||
		*got != (ServeOptions{ConfigPath: "mg.yaml", LogFormat: "json", LogLevel: "debug"}) {
		t.Errorf("serve --log-format json --log-level debug = %d %q, options %+v", code, errOut, got)
	}
	if code, _ := serve("--config", "mg.yaml"); code != 0 || got == nil || *got != (ServeOptions{ConfigPath: "mg.yaml"}) {
		t.Errorf("serve without log flags = %d, options %+v: want them empty (the config file's)", code, got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "loud"}, "Error: --log-level loud: want debug, info, warn or error\n"},
		{[]string{"--log-level", ""}, "Error: --log-level \"\": want debug, info, warn or error\n"},
		{[]string{"--log-format", "xml"}, "Error: --log-format xml: want text or json\n"},
	} {
		code, errOut := serve(tc.args...)
		if code != ExitUsage || got != nil || !strings.HasPrefix(errOut, tc.want) {
			t.Errorf("serve %q = %d %q (daemon started: %v), want %d and %q", tc.args, code, errOut, got != nil, ExitUsage, tc.want)
		}
	}
}
