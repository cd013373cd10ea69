package config

import (
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLogging(t *testing.T) {
	f, err := Load("testdata/good/logging.yaml")
	if err != nil {
		t.Fatalf("Load(logging.yaml) = %v", err)
	}
	want := Logging{Format: "json", Level: "debug", AccessLog: AccessLog{Path: "stderr", Buffer: 100}}
	if diff := cmp.Diff(want, f.Logging); diff != "" {
		t.Errorf("logging (-want +got):\n%s", diff)
	}
	// Left out: text, info, no access log.
	if d := Default().Logging; d != (Logging{}) {
		t.Errorf("default logging = %+v, want the zero value (text, info, no access log)", d)
	}
	_, err = Parse([]byte("logging: {access_log: {buffer: 2000000}}\n"))
	if diff := cmp.Diff([]string{"logging.access_log.buffer: 2000000 is out of range: from 1 to 1048576 lines (0: the default, 4096)"}, problemLines(err)); diff != "" {
		t.Errorf("buffer too large (-want +got):\n%s", diff)
	}
}

func TestParseLogFlags(t *testing.T) {
	for _, tc := range []struct {
		in      string
		level   slog.Level
		wantErr string
	}{
		{"", slog.LevelInfo, ""}, {"debug", slog.LevelDebug, ""}, {"info", slog.LevelInfo, ""},
		{"warn", slog.LevelWarn, ""}, {"error", slog.LevelError, ""},
		{"loud", 0, "loud: want debug, info, warn or error"}, {"INFO", 0, "INFO: want debug, info, warn or error"},
	} {
		got, err := ParseLogLevel(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseLogLevel(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.level {
			t.Errorf("ParseLogLevel(%q) = %v, %v; want %v", tc.in, got, err, tc.level)
		}
	}
	for in, want := range map[string]string{"": "text", "text": "text", "json": "json"} {
		if got, err := ParseLogFormat(in); err != nil || got != want {
			t.Errorf("ParseLogFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseLogFormat("xml"); err == nil || err.Error() != "xml: want text or json" {
		t.Errorf("ParseLogFormat(xml) = %v, want \"xml: want text or json\"", err)
	}
}
