package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/proxy/accesslog"
)

// ServeOptions are `modelgate serve`'s flags.
type ServeOptions struct {
	// ConfigPath is the config file; empty: the defaults, no endpoints.
	ConfigPath string
	// LogFormat and LogLevel, when set, win over the config file's
	// logging.format and logging.level.
	LogFormat, LogLevel string
}

// Serve is `modelgate serve`: load the file (every problem listed when
// it is invalid, nothing changed), log as the flags and the file's
// logging: say, run until ctx ends.
func Serve(ctx context.Context, opts ServeOptions, stdout, stderr io.Writer) error {
	var f *config.File
	var err error
	if opts.ConfigPath == "" {
		f, err = config.Parse(nil)
	} else {
		f, err = config.Load(opts.ConfigPath)
	}
	if err != nil {
		return err
	}
	log, err := NewLogger(stderr, f.Logging, opts.LogFormat, opts.LogLevel)
	if err != nil {
		return err
	}
	d, err := New(ctx, Options{Config: f, ConfigPath: opts.ConfigPath, Logger: log, Stderr: stderr, LogFormat: opts.LogFormat})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// logSettings are the log's format and level: the flags' when given, else
// the config file's logging.format and logging.level, else text and info.
func logSettings(l config.Logging, flagFormat, flagLevel string) (format string, level slog.Level, err error) {
	if flagFormat == "" {
		flagFormat = l.Format
	}
	if flagLevel == "" {
		flagLevel = l.Level
	}
	if format, err = config.ParseLogFormat(flagFormat); err != nil {
		return "", 0, fmt.Errorf("log format %w", err)
	}
	if level, err = config.ParseLogLevel(flagLevel); err != nil {
		return "", 0, fmt.Errorf("log level %w", err)
	}
	return format, level, nil
}

// NewLogger is the daemon's logger on w: log/slog's text or JSON handler
// at the level set by the flags (flagFormat, flagLevel; empty: not given)
// or else the config file's logging: section.
func NewLogger(w io.Writer, l config.Logging, flagFormat, flagLevel string) (*slog.Logger, error) {
	format, level, err := logSettings(l, flagFormat, flagLevel)
	if err != nil {
		return nil, err
	}
	ho := &slog.HandlerOptions{Level: level}
	if format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return slog.New(slog.NewTextHandler(w, ho)), nil
}

// accessLog is the data plane's access log and the file it writes (nil:
// standard error), open from New to Shutdown.
type accessLog struct {
	log  *accesslog.Log
	file *os.File
}

// openAccessLog starts the access log logging.access_log asks for, in the
// log's format (flagFormat wins over logging.format, as for the log);
// nil when it is off.
func openAccessLog(l config.Logging, flagFormat string, stderr io.Writer, log *slog.Logger) (*accessLog, error) {
	if l.AccessLog.Path == "" {
		return nil, nil
	}
	name, _, err := logSettings(l, flagFormat, "")
	if err != nil {
		return nil, err
	}
	format, _ := accesslog.ParseFormat(name)
	a := &accessLog{}
	w := stderr
	if l.AccessLog.Path != config.AccessLogStderr {
		if a.file, err = os.OpenFile(l.AccessLog.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return nil, fmt.Errorf("logging.access_log.path: %w", err)
		}
		w = a.file
	}
	path := l.AccessLog.Path
	a.log = accesslog.New(w, accesslog.Options{Format: format, Buffer: l.AccessLog.Buffer, OnWriteError: func(err error) {
		log.Error("access log lines lost: writing them failed (counted in modelgate_access_log_dropped_total)", "path", path, "err", err)
	}})
	return a, nil
}

// proxyLog is the access log as proxy.Options takes it.
func (a *accessLog) proxyLog() *accesslog.Log {
	if a == nil {
		return nil
	}
	return a.log
}

// close writes the lines queued and closes the file; the data plane has
// stopped.
func (a *accessLog) close() error {
	if a == nil {
		return nil
	}
	a.log.Close()
	if a.file != nil {
		return a.file.Close()
	}
	return nil
}

// accessLogDropped is modelgate_access_log_dropped_total: 0 while the
// access log is off.
func accessLogDropped(a *accessLog) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "modelgate_access_log_dropped_total",
		Help: "Access log lines lost: dropped because the writer fell logging.access_log.buffer lines behind, or not written because the destination failed."},
		func() float64 {
			if a == nil {
				return 0
			}
			return float64(a.log.Dropped())
		})
}
