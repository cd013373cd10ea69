// Package config reads modelgate's YAML configuration file: it decodes it
// strictly (an unknown key, a duplicate key or a value of the wrong type is
// a problem with its field path), fills in defaults and validates it into
// spec types, reporting every problem at once.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/authtoken"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// Defaults applied by Parse to a key left out, null or at its zero value.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultAdminListen     = "127.0.0.1:8081"
	DefaultStatePath       = "modelgate.db"
	DefaultMaxRequestBytes = 10 << 20 // 10 MiB
	// TokenFileName is the admin token's file name beside the state file,
	// used when admin.token_file is empty.
	TokenFileName = "admin.token"
)

// File is a modelgate configuration file. Parse and Load return it with
// defaults filled in and validated.
//
// Endpoints are kept as written: Parse does not apply
// spec.Endpoint.WithDefaults, so that callers can tell "traffic not given"
// from "traffic given" and a re-encoded File reads like its source. Use
// EndpointsWithDefaults for the effective endpoints.
type File struct {
	// Listen is the data plane's host:port. Empty: 127.0.0.1:8080.
	Listen string `yaml:"listen" json:"listen"`
	// TLS, when it names a certificate, makes the data plane speak HTTPS
	// only. Empty: plain HTTP.
	TLS TLS `yaml:"tls" json:"tls,omitzero"`
	// Admin configures the admin API.
	Admin Admin `yaml:"admin" json:"admin"`
	// State configures the durable store.
	State State `yaml:"state" json:"state"`
	// MaxRequestBytes caps a request body; a larger one is answered 413.
	// Zero: 10 MiB. Negative is invalid.
	MaxRequestBytes int64 `yaml:"max_request_bytes" json:"max_request_bytes"`
	// Limits bound what clients can make the data plane hold or wait for.
	Limits Limits `yaml:"limits" json:"limits"`
	// Logging configures serve's log and the data plane's access log.
	Logging Logging `yaml:"logging" json:"logging,omitzero"`
	// Endpoints are the endpoints served, in order. Their traffic and
	// mirror only initialise an endpoint the store does not know yet.
	Endpoints []spec.Endpoint `yaml:"endpoints" json:"endpoints"`
}

// Admin configures the admin API (also /metrics and the dashboard).
type Admin struct {
	// Listen is the admin API's host:port. Empty: 127.0.0.1:8081.
	Listen string `yaml:"listen" json:"listen"`
	// TLS, when it names a certificate, makes the admin API speak HTTPS
	// only. Empty: plain HTTP.
	TLS TLS `yaml:"tls" json:"tls,omitzero"`
	// AdvertiseURL is the admin API's URL as the other gateways of a fleet
	// give it to clients (cluster mode: the leader's, for rollout starts
	// and actions). Empty: http:// or https:// and admin.listen, an
	// unspecified host (0.0.0.0, ::) replaced by the machine's hostname.
	AdvertiseURL string `yaml:"advertise_url" json:"advertise_url,omitempty"`
	// TokenFile is the file holding the admin bearer token, created 0600
	// on first start. Empty: admin.token beside the state file (see
	// File.TokenPath).
	TokenFile string `yaml:"token_file" json:"token_file"`
	// ReadOnlyTokenFile, when set, holds a second token that may only
	// read: every GET of the API but the state backup, the dashboard and
	// the event stream (created 0600 on first start, as the admin token
	// is). Empty: no read-only token.
	ReadOnlyTokenFile string `yaml:"read_only_token_file" json:"read_only_token_file,omitempty"`
	// TokenOverlap is how long a token replaced in its file stays valid
	// after the SIGHUP that reads the new one, so that clients can pick up
	// the new token without a refused call. Zero: 10m; at most 168h.
	TokenOverlap spec.Duration `yaml:"token_overlap" json:"token_overlap,omitempty"`
}

// TLS is a listener's TLS (`tls:` for listen, `admin.tls:`): a
// certificate and key, re-read on SIGHUP (connections open keep theirs),
// and a client CA for mutual TLS. Paths are relative to the working
// directory.
type TLS struct {
	// CertFile holds the certificate chain (PEM), leaf first.
	CertFile string `yaml:"cert_file" json:"cert_file,omitempty"`
	// KeyFile holds the certificate's private key (PEM).
	KeyFile string `yaml:"key_file" json:"key_file,omitempty"`
	// ClientCAFile, when set, holds the CAs (PEM) a client certificate
	// must chain to; every client must present one (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file" json:"client_ca_file,omitempty"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `yaml:"min_version" json:"min_version,omitempty"`
}

// Enabled reports whether the block turns TLS on.
func (t TLS) Enabled() bool { return t != TLS{} }

// Files is the block as tlsconf reads it.
func (t TLS) Files() tlsconf.ServerFiles {
	return tlsconf.ServerFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile, MinVersion: t.MinVersion}
}

func (t TLS) validate(field string) error {
	if !t.Enabled() {
		return nil
	}
	var errs []error
	if t.CertFile == "" {
		errs = append(errs, spec.Problemf(field+".cert_file", "is required with %s (the certificate's PEM file); remove the block for plain HTTP", field))
	}
	if t.KeyFile == "" {
		errs = append(errs, spec.Problemf(field+".key_file", "is required with %s (the private key's PEM file); remove the block for plain HTTP", field))
	}
	if _, err := tlsconf.ParseVersion(t.MinVersion); err != nil {
		errs = append(errs, spec.Problemf(field+".min_version", "%v", err))
	}
	return errors.Join(errs...)
}

// State configures the durable store.
type State struct {
	// Path is the embedded store's file. Empty: modelgate.db, relative to
	// the working directory. With Etcd set it is not opened; the token
	// files still default to its directory.
	Path string `yaml:"path" json:"path"`
	// Etcd, when set, keeps the state in an etcd cluster shared by every
	// gateway of the fleet (cluster mode, docs/cluster.md) instead of the
	// file at Path.
	Etcd *Etcd `yaml:"etcd" json:"etcd,omitempty"`
}

// Etcd is the state's etcd cluster (state.etcd).
type Etcd struct {
	// Endpoints are the members' client URLs (http://host:2379, or
	// https:// with TLS). Required.
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
	// Prefix is the key prefix every key of this fleet lives under; fleets
	// sharing a cluster need prefixes of their own. Empty: /modelgate/.
	Prefix string `yaml:"prefix" json:"prefix,omitempty"`
	// DialTimeout bounds connecting to the cluster, and each call's wait
	// for a member. Zero: 5s.
	DialTimeout spec.Duration `yaml:"dial_timeout" json:"dial_timeout,omitempty"`
	// TLS verifies the members (ca_file, server_name) and presents a
	// client certificate (cert_file, key_file) for https endpoints.
	TLS *spec.BackendTLS `yaml:"tls" json:"tls,omitempty"`
	// LeaseTTL is how long a leader that stops renewing its lease
	// (crashed, paused, cut off from etcd) keeps leading the fleet's
	// rollouts before another gateway takes over. Zero: 15s; 2s to 5m.
	LeaseTTL spec.Duration `yaml:"lease_ttl" json:"lease_ttl,omitempty"`
	// EventRetention is how long the fleet's event log keeps an event (the
	// leader drops older ones every hour). Zero: 720h (30 days); 1h to
	// 8760h.
	EventRetention spec.Duration `yaml:"event_retention" json:"event_retention,omitempty"`
	// CompactHistory makes the leader compact etcd's history every 5
	// minutes, keeping 5 minutes of it (as kube-apiserver does). Compaction
	// is cluster-wide: set it only on a cluster of the fleet's own. False:
	// the cluster must compact itself (--auto-compaction-retention).
	CompactHistory bool `yaml:"compact_history" json:"compact_history,omitempty"`
	// MaxTxnOps and MaxRequestBytes are the cluster's limits on one request
	// (etcd's --max-txn-ops and --max-request-bytes): a change larger than
	// them (an apply of many endpoints) is refused whole, naming them.
	// Raise them here only together with the cluster's. Zero: etcd's
	// defaults, 128 and 1572864 (1.5 MiB).
	MaxTxnOps       int `yaml:"max_txn_ops" json:"max_txn_ops,omitempty"`
	MaxRequestBytes int `yaml:"max_request_bytes" json:"max_request_bytes,omitempty"`
	// Username and PasswordFile authenticate to etcd when it has auth
	// enabled; the file is read as the token files are (mode 0600, at least
	// 32 characters). Both or neither.
	Username     string `yaml:"username" json:"username,omitempty"`
	PasswordFile string `yaml:"password_file" json:"password_file,omitempty"`
	// EvidenceInterval is how often the leader pulls what every replica
	// served for the running rollouts. Zero: 250ms; 50ms to 10s.
	EvidenceInterval spec.Duration `yaml:"evidence_interval" json:"evidence_interval,omitempty"`
	// EvidenceGrace is how long the leader waits for a replica that does
	// not answer before judging the seconds it has not reported without
	// it ("evidence from N of M replicas"). Zero: 2s; at least two
	// intervals, at most 1m.
	EvidenceGrace spec.Duration `yaml:"evidence_grace" json:"evidence_grace,omitempty"`
	// PeerTLS verifies the other replicas' admin APIs (ca_file,
	// server_name) and presents a client certificate when they ask for one
	// (admin.tls.client_ca_file), for https admin URLs. Nil: the system's
	// roots.
	PeerTLS *spec.BackendTLS `yaml:"peer_tls" json:"peer_tls,omitempty"`
}

// Defaults of state.etcd.
const (
	DefaultEtcdPrefix      = "/modelgate/"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdLeaseTTL    = 15 * time.Second
	// DefaultEtcdEventRetention is store/etcd.DefaultEventRetention.
	DefaultEtcdEventRetention = 30 * 24 * time.Hour
	// DefaultEvidenceInterval and DefaultEvidenceGrace are
	// fleet.DefaultInterval and fleet.DefaultGrace.
	DefaultEvidenceInterval = 250 * time.Millisecond
	DefaultEvidenceGrace    = 2 * time.Second
)

func (e *Etcd) setDefaults() {
	if e.Prefix == "" {
		e.Prefix = DefaultEtcdPrefix
	}
	if e.DialTimeout == 0 {
		e.DialTimeout = spec.Duration(DefaultEtcdDialTimeout)
	}
	if e.LeaseTTL == 0 {
		e.LeaseTTL = spec.Duration(DefaultEtcdLeaseTTL)
	}
	if e.EventRetention == 0 {
		e.EventRetention = spec.Duration(DefaultEtcdEventRetention)
	}
	if e.EvidenceInterval == 0 {
		e.EvidenceInterval = spec.Duration(DefaultEvidenceInterval)
	}
	if e.EvidenceGrace == 0 {
		e.EvidenceGrace = spec.Duration(DefaultEvidenceGrace)
	}
}

func (e *Etcd) validate() error {
	var errs []error
	if len(e.Endpoints) == 0 {
		errs = append(errs, spec.Problemf("state.etcd.endpoints", "is required: the members' client URLs, e.g. [http://10.0.0.1:2379]"))
	}
	for i, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, spec.Problemf(fmt.Sprintf("state.etcd.endpoints[%d]", i), "%q is not a member's client URL: use http://host:port or https://host:port", ep))
		}
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		errs = append(errs, spec.Problemf("state.etcd.prefix", "%q must start and end with /, e.g. /modelgate/prod/", e.Prefix))
	}
	if e.DialTimeout.D() < 0 || e.DialTimeout.D() > time.Minute {
		errs = append(errs, spec.Problemf("state.etcd.dial_timeout", "%v is out of range: a positive time of at most 1m", e.DialTimeout.D()))
	}
	if t := e.LeaseTTL.D(); t < 2*time.Second || t > 5*time.Minute {
		errs = append(errs, spec.Problemf("state.etcd.lease_ttl", "%v is out of range: between 2s and 5m", t))
	}
	if r := e.EventRetention.D(); r < time.Hour || r > 365*24*time.Hour {
		errs = append(errs, spec.Problemf("state.etcd.event_retention", "%v is out of range: between 1h and 8760h", r))
	}
	if e.MaxTxnOps != 0 && (e.MaxTxnOps < 16 || e.MaxTxnOps > 100000) {
		errs = append(errs, spec.Problemf("state.etcd.max_txn_ops", "%d is out of range: between 16 and 100000, as etcd's --max-txn-ops", e.MaxTxnOps))
	}
	if e.MaxRequestBytes != 0 && (e.MaxRequestBytes < 64<<10 || e.MaxRequestBytes > 64<<20) {
		errs = append(errs, spec.Problemf("state.etcd.max_request_bytes", "%d is out of range: between 65536 and 67108864, as etcd's --max-request-bytes", e.MaxRequestBytes))
	}
	if (e.Username == "") != (e.PasswordFile == "") {
		errs = append(errs, spec.Problemf("state.etcd.username", "username and password_file go together: give both or neither"))
	}
	if e.TLS != nil {
		errs = append(errs, spec.Prefix("state.etcd.tls", e.TLS.Validate()))
	}
	if i := e.EvidenceInterval.D(); i < 50*time.Millisecond || i > 10*time.Second {
		errs = append(errs, spec.Problemf("state.etcd.evidence_interval", "%v is out of range: between 50ms and 10s", i))
	}
	if g := e.EvidenceGrace.D(); g < 2*e.EvidenceInterval.D() || g > time.Minute {
		errs = append(errs, spec.Problemf("state.etcd.evidence_grace", "%v is out of range: between two evidence intervals (%v) and 1m", g, 2*e.EvidenceInterval.D()))
	}
	if e.PeerTLS != nil {
		errs = append(errs, spec.Prefix("state.etcd.peer_tls", e.PeerTLS.Validate()))
	}
	return errors.Join(errs...)
}

// Limits bound what clients can make the data plane hold or wait for
// (docs/security.md). Zero: the data plane's default (proxy.Limits).
type Limits struct {
	// MaxConnections is the most client connections at once (10,000).
	MaxConnections int `yaml:"max_connections" json:"max_connections,omitempty"`
	// MaxHeaders is the most header fields per request (100); more: 431.
	MaxHeaders int `yaml:"max_headers" json:"max_headers,omitempty"`
	// MaxURIBytes is the longest request target (8 KiB); longer: 414.
	MaxURIBytes int `yaml:"max_uri_bytes" json:"max_uri_bytes,omitempty"`
	// SendTimeout cuts a client that takes nothing of its answer for this
	// long (60s), and the backend connection streaming to it.
	SendTimeout spec.Duration `yaml:"send_timeout" json:"send_timeout,omitempty"`
}

// Logging configures serve's log (logging:). serve's --log-format and
// --log-level win over Format and Level. Read at start only.
type Logging struct {
	// Format is the log's format: "text" (default) or "json", as log/slog
	// writes them.
	Format string `yaml:"format" json:"format,omitempty"`
	// Level is the least level logged: "debug", "info" (default), "warn"
	// or "error".
	Level string `yaml:"level" json:"level,omitempty"`
	// AccessLog is the data plane's access log: off unless its path is set.
	AccessLog AccessLog `yaml:"access_log" json:"access_log,omitzero"`
}

// AccessLog is the data plane's access log (logging.access_log): a line
// per request answered, in the log's format.
type AccessLog struct {
	// Path is where the lines go: "stderr", or a file (created 0600 if
	// missing, appended to). Empty: no access log.
	Path string `yaml:"path" json:"path,omitempty"`
	// Buffer is how many lines may wait for the writer; past it a line is
	// dropped and counted (modelgate_access_log_dropped_total). Zero: 4096;
	// at most 1048576.
	Buffer int `yaml:"buffer" json:"buffer,omitempty"`
}

// Log formats and levels, as written in logging: and serve's flags.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
	// AccessLogStderr is the access log path meaning standard error.
	AccessLogStderr = "stderr"
	// DefaultAccessLogBuffer and MaxAccessLogBuffer bound
	// logging.access_log.buffer (accesslog.DefaultBuffer, MaxBuffer).
	DefaultAccessLogBuffer = 4096
	MaxAccessLogBuffer     = 1 << 20
)

// ParseLogFormat checks a log format: "text" or "json"; empty is text.
func ParseLogFormat(s string) (string, error) {
	switch s {
	case "", LogFormatText:
		return LogFormatText, nil
	case LogFormatJSON:
		return LogFormatJSON, nil
	}
	return "", fmt.Errorf("%s: want text or json", s)
}

// ParseLogLevel reads a log level: "debug", "info", "warn" or "error";
// empty is info.
func ParseLogLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%s: want debug, info, warn or error", s)
}

func (l Logging) validate() error {
	var errs []error
	if _, err := ParseLogFormat(l.Format); err != nil {
		errs = append(errs, spec.Problemf("logging.format", "%q: want text or json", l.Format))
	}
	if _, err := ParseLogLevel(l.Level); err != nil {
		errs = append(errs, spec.Problemf("logging.level", "%q: want debug, info, warn or error", l.Level))
	}
	if b := l.AccessLog.Buffer; b < 0 || b > MaxAccessLogBuffer {
		errs = append(errs, spec.Problemf("logging.access_log.buffer", "%d is out of range: from 1 to %d lines (0: the default, %d)", b, MaxAccessLogBuffer, DefaultAccessLogBuffer))
	}
	return errors.Join(errs...)
}

// maxURIBytes is the most max_uri_bytes may be: a request head (request
// line and headers) must fit the data plane's 16 KiB head buffer.
const maxURIBytes = 16 << 10

// Default returns the configuration of an empty file.
func Default() *File {
	f := &File{}
	f.setDefaults()
	return f
}

func (f *File) setDefaults() {
	if f.Listen == "" {
		f.Listen = DefaultListen
	}
	if f.Admin.Listen == "" {
		f.Admin.Listen = DefaultAdminListen
	}
	if f.State.Path == "" {
		f.State.Path = DefaultStatePath
	}
	if f.State.Etcd != nil {
		f.State.Etcd.setDefaults()
	}
	if f.MaxRequestBytes == 0 {
		f.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if f.Admin.TokenOverlap == 0 {
		f.Admin.TokenOverlap = spec.Duration(authtoken.DefaultOverlap)
	}
}

// Load reads the file at path and parses it. A read error names the file;
// an invalid file gives a *FileError carrying every problem.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return f, nil
}

// FileError is an invalid configuration file: its path and the problems
// Parse found. spec.Problems(err) lists them.
type FileError struct {
	// Path is the file as given to Load.
	Path string
	// Err joins the problems, as Parse returns them.
	Err error
}

// Error lists the problems one a line, each prefixed with the file's path:
// "modelgate.yaml: endpoints[0].traffic: weights sum to 99, ...".
func (e *FileError) Error() string {
	var b strings.Builder
	for i, p := range spec.Problems(e.Err) {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Path)
		b.WriteString(": ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the joined problems, so that spec.Problems and errors.As
// see each of them.
func (e *FileError) Unwrap() []error { return []error{e.Err} }

// Parse decodes a configuration file (YAML, or JSON), fills in defaults and
// validates it. It reports every problem at once: a *spec.Problem per
// problem at its field path, joined with errors.Join, decoding problems
// first (in document order), then validation problems, whose message also
// names the line where it can.
//
// Empty input is a valid file with defaults and no endpoints. The top level
// must be a mapping; more than one YAML document is a problem. A
// validation problem about a value that could not be decoded (or about the
// object holding it) is left out, as it would only repeat the first.
func Parse(data []byte) (*File, error) {
	var f File
	res := decode(data, reflect.ValueOf(&f).Elem())
	if res.syntax {
		return nil, errors.Join(res.problems...)
	}
	f.setDefaults()
	errs := res.problems
	for _, p := range spec.Problems(f.Validate()) {
		if shadowed(p.Field, res.failed) {
			continue
		}
		if line := lineOf(p.Field, res.lines); line > 0 && res.withLines {
			p.Message += fmt.Sprintf(" (line %d)", line)
		}
		errs = append(errs, &p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &f, nil
}

// shadowed reports whether a validation problem at field is about a value
// that failed to decode: the same field, inside it, or the object holding it.
func shadowed(field string, failed []string) bool {
	for _, f := range failed {
		if within(field, f) || (field != "" && within(f, field)) {
			return true
		}
	}
	return false
}

// within reports whether path is parent or a field inside it.
func within(path, parent string) bool {
	if parent == "" || path == parent {
		return true
	}
	return strings.HasPrefix(path, parent) && (path[len(parent)] == '.' || path[len(parent)] == '[')
}

// lineOf returns the line of field, or of the closest enclosing field that
// was written (a missing key is reported at its object's line); 0 if none.
func lineOf(field string, lines map[string]int) int {
	for field != "" {
		if line, ok := lines[field]; ok {
			return line
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			return 0
		}
		field = field[:i]
	}
	return 0
}

// Validate checks the file as it is (Parse fills in defaults first, so a
// File built in code should start from Default) and returns every problem
// with its field path: listen addresses are host:port, max_request_bytes is
// positive, every endpoint is valid and endpoint names are unique.
func (f *File) Validate() error {
	var errs []error
	errs = append(errs, validateListen("listen", f.Listen))
	errs = append(errs, validateListen("admin.listen", f.Admin.Listen))
	errs = append(errs, f.TLS.validate("tls"), f.Admin.TLS.validate("admin.tls"))
	if sameListener(f.Listen, f.Admin.Listen) {
		errs = append(errs, spec.Problemf("admin.listen",
			"%q collides with listen %q; the admin API needs its own address", f.Admin.Listen, f.Listen))
	}
	if f.State.Path == "" {
		errs = append(errs, spec.Problemf("state.path", "is required"))
	}
	if f.State.Etcd != nil {
		errs = append(errs, f.State.Etcd.validate())
	}
	if a := f.Admin.AdvertiseURL; a != "" {
		if u, err := url.Parse(a); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, spec.Problemf("admin.advertise_url", "%q is not a URL: use http://host:port or https://host:port", a))
		}
	}
	if o := f.Admin.TokenOverlap.D(); o < 0 || o > authtoken.MaxOverlap {
		errs = append(errs, spec.Problemf("admin.token_overlap", "%v is out of range: a replaced token stays valid for a positive time of at most %v", o, authtoken.MaxOverlap))
	}
	if f.Admin.ReadOnlyTokenFile != "" && filepath.Clean(f.Admin.ReadOnlyTokenFile) == filepath.Clean(f.TokenPath()) {
		errs = append(errs, spec.Problemf("admin.read_only_token_file", "%q is the admin token's file: the read-only token needs a file of its own", f.Admin.ReadOnlyTokenFile))
	}
	if f.MaxRequestBytes <= 0 {
		errs = append(errs, spec.Problemf("max_request_bytes", "must be greater than 0, got %d", f.MaxRequestBytes))
	}
	errs = append(errs, f.Limits.validate(), f.Logging.validate())
	seen := map[string]int{}
	for i, e := range f.Endpoints {
		path := fmt.Sprintf("endpoints[%d]", i)
		errs = append(errs, spec.Prefix(path, e.Validate()))
		if j, dup := seen[e.Name]; dup && e.Name != "" {
			errs = append(errs, spec.Problemf(path+".name", "duplicate endpoint %q (also endpoints[%d])", e.Name, j))
		} else {
			seen[e.Name] = i
		}
	}
	return errors.Join(errs...)
}

func (l Limits) validate() error {
	var errs []error
	for _, v := range []struct {
		field string
		n     int
	}{{"limits.max_connections", l.MaxConnections}, {"limits.max_headers", l.MaxHeaders}, {"limits.max_uri_bytes", l.MaxURIBytes}} {
		if v.n < 0 {
			errs = append(errs, spec.Problemf(v.field, "must not be negative, got %d (0: the default)", v.n))
		}
	}
	if l.MaxURIBytes > maxURIBytes {
		errs = append(errs, spec.Problemf("limits.max_uri_bytes", "must be at most %d (a request head must fit the 16 KiB head buffer), got %d", maxURIBytes, l.MaxURIBytes))
	}
	if l.SendTimeout < 0 {
		errs = append(errs, spec.Problemf("limits.send_timeout", "must not be negative, got %s (0: the default, 60s)", l.SendTimeout))
	}
	return errors.Join(errs...)
}

// validateListen checks a listen address: host:port with a numeric port
// (0 picks a free one) and a host that is empty (every interface), an IP
// address or a host name.
func validateListen(field, addr string) error {
	if addr == "" {
		return spec.Problemf(field, "is required, e.g. 127.0.0.1:8080")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return spec.Problemf(field, "%q is not host:port, e.g. 127.0.0.1:8080", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" || n > 65535 {
		return spec.Problemf(field, "%q: port must be a number from 0 to 65535", addr)
	}
	if host != "" && !validHost(host) {
		return spec.Problemf(field, "%q: %q is not an IP address or host name", addr, host)
	}
	return nil
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// sameListener reports whether two valid listen addresses would bind the
// same non-zero port on overlapping interfaces.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	if n, err := strconv.Atoi(pa); err != nil || n == 0 {
		return false
	}
	return ha == hb || unspecified(ha) || unspecified(hb)
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

// CheckListenerFiles reads the listeners' TLS files (tls, admin.tls) as
// serve would and returns a problem for each block that cannot be used:
// a missing file, a key that does not match its certificate, a CA file
// with no certificate.
func (f *File) CheckListenerFiles() error {
	var errs []error
	for _, l := range []struct {
		field string
		t     TLS
	}{{"tls", f.TLS}, {"admin.tls", f.Admin.TLS}} {
		if !l.t.Enabled() {
			continue
		}
		if _, err := tlsconf.NewServer(l.field, l.t.Files()); err != nil {
			errs = append(errs, &spec.Problem{Message: err.Error()}) // the message names the key
		}
	}
	return errors.Join(errs...)
}

// AdminURL is the admin API's URL as other gateways give it out:
// admin.advertise_url, else the scheme and the address the admin listener
// got (listening: admin.listen with its port chosen) with an unspecified
// host replaced by the machine's hostname.
func (f *File) AdminURL(listening string) string {
	if f.Admin.AdvertiseURL != "" {
		return strings.TrimSuffix(f.Admin.AdvertiseURL, "/")
	}
	scheme := "http"
	if f.Admin.TLS.Enabled() {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(listening)
	if err != nil {
		return scheme + "://" + listening
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		if name, err := os.Hostname(); err == nil {
			host = name
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// TokenPath returns the admin token file: admin.token_file if set, else
// admin.token in the state file's directory.
func (f *File) TokenPath() string {
	if f.Admin.TokenFile != "" {
		return f.Admin.TokenFile
	}
	return filepath.Join(filepath.Dir(f.State.Path), TokenFileName)
}

// EndpointsWithDefaults returns deep copies of the endpoints with
// spec.Endpoint.WithDefaults applied: deployment timeouts filled in, and
// traffic 100 for the first deployment where the file gives none.
func (f *File) EndpointsWithDefaults() []spec.Endpoint {
	out := make([]spec.Endpoint, len(f.Endpoints))
	for i, e := range f.Endpoints {
		out[i] = e.WithDefaults()
	}
	return out
}
