package cli

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/internal/version"
)

func runArgs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut, func(string) string { return "" }, nil)
	return code, out.String(), errOut.String()
}

func TestVersionAndCompletion(t *testing.T) {
	want := "modelgate " + version.String() + " (" + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if code, out, errOut := runArgs(t, "version"); code != ExitOK || out != want {
		t.Errorf("version = %d %q %q, want %q", code, out, errOut, want)
	}
	if code, out, _ := runArgs(t, "--version"); code != ExitOK || out != "modelgate "+version.String()+"\n" {
		t.Errorf("--version = %d %q", code, out)
	}
	code, out, _ := runArgs(t, "version", "-o", "json")
	var v versionInfo
	if code != ExitOK || json.Unmarshal([]byte(out), &v) != nil || v.Version != version.String() || v.Go != runtime.Version() {
		t.Errorf("version -o json = %d %q", code, out)
	}
	if code, _, errOut := runArgs(t, "version", "extra"); code != ExitUsage || !strings.Contains(errOut, "takes no arguments") {
		t.Errorf("version extra = %d %q, want a usage error", code, errOut)
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if code, out, errOut := runArgs(t, "completion", shell); code != ExitOK || !strings.Contains(out, "modelgate") || len(out) < 500 {
			t.Errorf("completion %s = %d, %d bytes, %q", shell, code, len(out), errOut)
		}
	}
}
