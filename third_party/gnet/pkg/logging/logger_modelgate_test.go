// modelgate addition: GNET_LOGGING_LEVEL takes level names as well as
// numbers, and a value it cannot read never panics.

package logging

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Level
		ok   bool
	}{
		{"debug", DebugLevel, true},
		{"DEBUG", DebugLevel, true},
		{"Info", InfoLevel, true},
		{"warn", WarnLevel, true},
		{"error", ErrorLevel, true},
		{"dpanic", DPanicLevel, true},
		{"Panic", PanicLevel, true},
		{"FATAL", FatalLevel, true},
		{" error ", ErrorLevel, true},
		{"-1", DebugLevel, true},
		{"0", InfoLevel, true},
		{"1", WarnLevel, true},
		{"2", ErrorLevel, true},
		{"5", FatalLevel, true},
		{"6", InfoLevel, false},
		{"-2", InfoLevel, false},
		{"1000", InfoLevel, false},
		{"verbose", InfoLevel, false},
		{"warning", InfoLevel, false},
		{"", InfoLevel, false},
	} {
		got, ok := parseLevel(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseLevel(%q) = %v, %t; want %v, %t", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestLoggingLevelEnv runs this test binary again with GNET_LOGGING_LEVEL
// set, so that the package's init reads it: it must not panic, must take a
// name, and must keep the default level, saying so in one line on stderr,
// for a value it cannot read.
func TestLoggingLevelEnv(t *testing.T) {
	if os.Getenv("GNET_LOGGING_LEVEL_CHILD") == "1" {
		os.Stdout.WriteString("level=" + LogLevel() + "\n")
		return
	}
	for _, tc := range []struct {
		env, level string
		warned     bool
	}{
		{"debug", "DEBUG", false},
		{"Error", "ERROR", false},
		{"-1", "DEBUG", false},
		{"2", "ERROR", false},
		{"bogus", "INFO", true},
		{"9", "INFO", true},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLoggingLevelEnv$", "-test.count=1")
		// GORACE: a binary built with -race otherwise sleeps 1 s as it exits.
		cmd.Env = append(os.Environ(), "GNET_LOGGING_LEVEL_CHILD=1", "GNET_LOGGING_LEVEL="+tc.env, "GNET_LOGGING_FILE=",
			"GORACE=atexit_sleep_ms=0")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("GNET_LOGGING_LEVEL=%s: %v\nstdout: %s\nstderr: %s", tc.env, err, stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), "level="+tc.level+"\n") {
			t.Errorf("GNET_LOGGING_LEVEL=%s: level is not %s: %s", tc.env, tc.level, stdout.String())
		}
		lines := strings.Count(stderr.String(), "\n")
		if tc.warned && (lines != 1 || !strings.Contains(stderr.String(), "GNET_LOGGING_LEVEL=\""+tc.env+"\" ignored")) {
			t.Errorf("GNET_LOGGING_LEVEL=%s: want one line on stderr saying it was ignored, got %q", tc.env, stderr.String())
		}
		if !tc.warned && lines != 0 {
			t.Errorf("GNET_LOGGING_LEVEL=%s: want nothing on stderr, got %q", tc.env, stderr.String())
		}
	}
}
