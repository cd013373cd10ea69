package daemon_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/testenv"
)

// TestLogger: the daemon's log is JSON or text at the level asked for,
// the flags winning over the config file's logging: section.
func TestLogger(t *testing.T) {
	for _, tc := range []struct {
		name               string
		cfg                config.Logging
		flagFormat, flagLv string
		json               bool
		want, notWant      []string
	}{
		{name: "json at warn", cfg: config.Logging{Format: "json", Level: "warn"}, json: true,
			want: []string{"WARN", "ERROR"}, notWant: []string{"DEBUG", "INFO"}},
		{name: "defaults: text at info", want: []string{"INFO", "WARN", "ERROR"}, notWant: []string{"DEBUG"}},
		{name: "flags win", cfg: config.Logging{Format: "text", Level: "error"}, flagFormat: "json", flagLv: "debug", json: true,
			want: []string{"DEBUG", "INFO", "WARN", "ERROR"}},
		{name: "flag level only", cfg: config.Logging{Format: "json", Level: "debug"}, flagLv: "error", json: true,
			want: []string{"ERROR"}, notWant: []string{"DEBUG", "INFO", "WARN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := daemon.NewLogger(&buf, tc.cfg, tc.flagFormat, tc.flagLv)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("m", "k", "v")
			log.Info("m", "k", "v")
			log.Warn("m", "k", "v")
			log.Error("m", "k", "v")
			levels := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if tc.json {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Fatalf("line %q is not JSON: %v", line, err)
					}
					if m["msg"] != "m" || m["k"] != "v" {
						t.Errorf("line %q: want msg m and k v", line)
					}
					levels[m["level"].(string)] = true
					continue
				}
				lv, ok := strings.CutPrefix(line[strings.Index(line, " level=")+1:], "level=")
				if !ok || !strings.HasPrefix(line, "time=") || !strings.HasSuffix(line, " msg=m k=v") {
					t.Fatalf("line %q is not slog's text", line)
				}
				levels[strings.Fields(lv)[0]] = true
			}
			for _, l := range tc.want {
				if !levels[l] {
					t.Errorf("no %s line in\n%s", l, buf.String())
				}
			}
			for _, l := range tc.notWant {
				if levels[l] {
					t.Errorf("a %s line in\n%s", l, buf.String())
				}
			}
		})
	}
}

// TestServeRefusesBadLogFlags: a bad flag reaching the daemon (not through
// the CLI's check) is refused before anything starts.
func TestServeRefusesBadLogFlags(t *testing.T) {
	err := daemon.Serve(t.Context(), daemon.ServeOptions{LogLevel: "loud"}, io.Discard, io.Discard)
	if err == nil || err.Error() != "log level loud: want debug, info, warn or error" {
		t.Errorf("Serve(--log-level loud) = %v", err)
	}
}

// TestAccessLogFile: with logging.access_log.path set, the daemon writes
// a line per proxied request there, in the log's format, and /metrics
// counts the lines dropped.
func TestAccessLogFile(t *testing.T) {
	dir := t.TempDir()
	blue := testenv.NewEcho(t, "blue")
	path := filepath.Join(dir, "access.log")
	yaml := "logging:\n  format: json\n  access_log: {path: " + path + ", buffer: 16}\n" +
		testenv.TwoDeploymentConfig(dir, blue.URL(), blue.URL(), "")
	d := testenv.StartDaemon(t, yaml)
	c := testenv.Connect(t, d)
	if code, dep, err := c.Predict("/fraud/v1/models/m:predict", map[string]string{"X-Request-Id": "daemon-1"}); err != nil || code != 200 || dep != "blue" {
		t.Fatalf("predict = %d %q %v", code, dep, err)
	}
	var line map[string]any
	testenv.WaitFor(t, 10*time.Second, "the access log line", func() bool {
		b, _ := os.ReadFile(path)
		return json.Unmarshal(b, &line) == nil
	})
	if line["endpoint"] != "fraud" || line["deployment"] != "blue" || line["status"] != float64(200) ||
		line["request_id"] != "daemon-1" || line["path"] != "/fraud/v1/models/m:predict" || line["method"] != "POST" {
		t.Errorf("access log line %v", line)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("access log file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	resp, err := http.Get(c.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "\nmodelgate_access_log_dropped_total 0\n") {
		t.Errorf("/metrics lacks modelgate_access_log_dropped_total 0")
	}
}
