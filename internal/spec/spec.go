// Package spec holds modelgate's domain types (endpoints, deployments,
// traffic and mirror weights) and their validation. It imports only the
// standard library so that every other package can share it.
package spec

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Defaults applied to a deployment field left at its zero value.
const (
	DefaultTimeout           = 10 * time.Second
	DefaultStreamIdleTimeout = 60 * time.Second
	DefaultMaxFails          = 3
	DefaultFailTimeout       = 10 * time.Second
	DefaultHealthInterval    = 5 * time.Second
	DefaultHealthTimeout     = 2 * time.Second
)

// Endpoint is a named entry point clients call at /{name}/...; the prefix
// is stripped before the request is forwarded to a deployment.
type Endpoint struct {
	// Name is the first path segment of the endpoint's URL.
	Name string `yaml:"name" json:"name"`
	// Deployments are the model versions behind the endpoint, in order;
	// the order decides ties and the sticky bucket layout.
	Deployments []Deployment `yaml:"deployments" json:"deployments"`
	// Traffic is the live split, summing to 100. In a config file it only
	// initialises an endpoint the store does not know yet. Empty in a file:
	// the first deployment gets 100.
	Traffic Weights `yaml:"traffic,omitempty" json:"traffic"`
	// Mirror is the percent of live requests copied to each deployment as
	// shadow traffic. Like Traffic, the file's value is only initial.
	Mirror Weights `yaml:"mirror,omitempty" json:"mirror"`
	// StickyHeader, when set, names a request header whose value pins a
	// client to one deployment. Empty: every request is split on its own.
	StickyHeader string `yaml:"sticky_header,omitempty" json:"sticky_header,omitempty"`
	// Override controls the X-Model-Deployment header, with which a client
	// pins a request to a deployment instead of the split. Nil: on, no
	// secret (see Override).
	Override *Override `yaml:"override,omitempty" json:"override,omitempty"`
	// Compare configures how shadow answers are captured and compared
	// with the live answers. Nil: every default (see Compare).
	Compare *Compare `yaml:"compare,omitempty" json:"compare,omitempty"`
	// Rollout is the endpoint's default rollout plan; a rollout may
	// override it when it starts. Nil: the built-in plan (see Plan).
	Rollout *Plan `yaml:"rollout,omitempty" json:"rollout,omitempty"`
	// Webhooks receive every rollout event of the endpoint as a JSON POST.
	Webhooks []Webhook `yaml:"webhooks,omitempty" json:"webhooks,omitempty"`
}

// Override is an endpoint's policy for the X-Model-Deployment header. A
// pinned request is served and counted (override_requests) but is never
// evidence for a rollout, whoever sends it. The header is untrusted unless
// a secret is set.
type Override struct {
	// Enabled: nil or true honours the header; false ignores it, and a
	// request carrying it is split like any other.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// SecretFile is the absolute path, on the gateway's machine, of a file
	// holding a secret of at least 32 characters that only the gateway's
	// user may read. When set, the header is honoured only with
	// X-Model-Deployment-Secret equal to the secret; with a missing or
	// wrong one the request is refused (403). The file is read whenever
	// the endpoints are applied and at start; the secret itself is never
	// stored or shown.
	SecretFile string `yaml:"secret_file,omitempty" json:"secret_file,omitempty"`
}

// On reports whether the header is honoured at all.
func (o *Override) On() bool { return o == nil || o.Enabled == nil || *o.Enabled }

// Secret returns the secret file's path; empty when none is required.
func (o *Override) Secret() string {
	if o == nil {
		return ""
	}
	return o.SecretFile
}

// Validate checks the override settings.
func (o *Override) Validate() error {
	if o == nil || o.SecretFile == "" {
		return nil
	}
	if !o.On() {
		return Problemf("secret_file", "set while enabled is false: the header is ignored, so a secret would check nothing; remove one of them")
	}
	if !filepath.IsAbs(o.SecretFile) {
		return Problemf("secret_file", "%q is not an absolute path (the file is read by the gateway, on its machine)", o.SecretFile)
	}
	return nil
}

// Clone returns a deep copy of o.
func (o *Override) Clone() *Override {
	if o == nil {
		return nil
	}
	c := *o
	if o.Enabled != nil {
		on := *o.Enabled
		c.Enabled = &on
	}
	return &c
}

// Deployment is one model version behind an endpoint.
type Deployment struct {
	// Name identifies the deployment in traffic, mirror and the
	// X-Model-Deployment header.
	Name string `yaml:"name" json:"name"`
	// Backends are base URLs of the replicas, e.g. http://10.0.0.5:9001.
	// A path in the URL is put in front of the forwarded path.
	Backends []string `yaml:"backends" json:"backends"`
	// Timeout bounds the wait for the response headers. Zero: 10s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// StreamIdleTimeout bounds the wait between two chunks of a streamed
	// body. Zero: 60s.
	StreamIdleTimeout Duration `yaml:"stream_idle_timeout,omitempty" json:"stream_idle_timeout,omitempty"`
	// MaxFails is how many failures in a row take a backend out of
	// rotation (passive health). Zero: 3.
	MaxFails int `yaml:"max_fails,omitempty" json:"max_fails,omitempty"`
	// FailTimeout is how long a backend stays out before it is tried
	// again. Zero: 10s.
	FailTimeout Duration `yaml:"fail_timeout,omitempty" json:"fail_timeout,omitempty"`
	// HealthCheck, when set, probes every backend actively. Nil: passive
	// health only.
	HealthCheck *HealthCheck `yaml:"health_check,omitempty" json:"health_check,omitempty"`
	// TLS configures the connections to the deployment's https backends:
	// the CA bundle they are verified with, a client certificate, the
	// server name. Nil: the system's roots, no client certificate, the
	// URL's host as server name. It applies to the live requests, the
	// shadow copies and the health checks alike.
	TLS *BackendTLS `yaml:"tls,omitempty" json:"tls,omitempty"`
}

// BackendTLS is how the gateway connects to a deployment's https
// backends (the keys of Prometheus's tls_config; nginx's
// proxy_ssl_trusted_certificate, proxy_ssl_certificate(_key), proxy_ssl_name;
// HAProxy's ca-file, crt, sni, verify none). Files are read by the
// gateway, on its machine, at every apply.
type BackendTLS struct {
	// CAFile is a PEM bundle of the CAs a backend's certificate must chain
	// to, instead of the system's roots.
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// CertFile and KeyFile are a client certificate (PEM chain, leaf
	// first) and its key, presented to backends that ask for one (mutual
	// TLS). Both or neither.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// ServerName is sent as SNI and checked against the backend's
	// certificate. Empty: the backend URL's host (when a name, SNI is sent;
	// an IP address is checked against the certificate's IP SANs).
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any certificate a backend presents: the
	// connection is encrypted but anyone on the path can pose as the
	// backend. For tests only; logged as a warning at every apply.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty" json:"insecure_skip_verify,omitempty"`
}

// Validate checks the keys together (the files are read by the gateway
// when the change is applied).
func (t *BackendTLS) Validate() error {
	if t == nil {
		return nil
	}
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, Problemf("", "cert_file and key_file go together: give both (a client certificate and its key) or neither"))
	}
	for _, f := range []struct{ key, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			errs = append(errs, Problemf(f.key, "%q is not an absolute path (the file is read by the gateway, on its machine)", f.path))
		}
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		errs = append(errs, Problemf("insecure_skip_verify", "set with ca_file: nothing would be verified against the CA; remove one of them"))
	}
	if t.ServerName != "" && strings.ContainsAny(t.ServerName, " /:") {
		errs = append(errs, Problemf("server_name", "%q is not a host name", t.ServerName))
	}
	return errors.Join(errs...)
}

// HealthCheck is an active probe: GET Path on every backend each Interval;
// a non-2xx answer or no answer within Timeout marks the backend down
// until a probe succeeds again.
type HealthCheck struct {
	// Path is probed on each backend, e.g. /v2/health/ready.
	Path string `yaml:"path" json:"path"`
	// Interval between probes. Zero: 5s.
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Timeout of one probe. Zero: 2s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Weights maps deployment names to percents. Traffic weights sum to 100;
// mirror weights are each 0..100.
type Weights map[string]Percent

// Clone returns an independent copy.
func (w Weights) Clone() Weights {
	if w == nil {
		return nil
	}
	out := make(Weights, len(w))
	for k, v := range w {
		out[k] = v
	}
	return out
}

// Sum adds every weight.
func (w Weights) Sum() Percent {
	var s Percent
	for _, v := range w {
		s += v
	}
	return s
}

// Equal reports whether both hold the same non-zero weights.
func (w Weights) Equal(o Weights) bool {
	for k, v := range w {
		if v != 0 && o[k] != v {
			return false
		}
	}
	for k, v := range o {
		if v != 0 && w[k] != v {
			return false
		}
	}
	return true
}

// Names returns the keys in sorted order (for stable messages).
func (w Weights) Names() []string {
	names := make([]string, 0, len(w))
	for k := range w {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// WithDefaults returns a copy of d with zero fields set to their defaults.
func (d Deployment) WithDefaults() Deployment {
	if d.Timeout == 0 {
		d.Timeout = Duration(DefaultTimeout)
	}
	if d.StreamIdleTimeout == 0 {
		d.StreamIdleTimeout = Duration(DefaultStreamIdleTimeout)
	}
	if d.MaxFails == 0 {
		d.MaxFails = DefaultMaxFails
	}
	if d.FailTimeout == 0 {
		d.FailTimeout = Duration(DefaultFailTimeout)
	}
	d.Backends = append([]string(nil), d.Backends...)
	if d.HealthCheck != nil {
		hc := *d.HealthCheck
		if hc.Interval == 0 {
			hc.Interval = Duration(DefaultHealthInterval)
		}
		if hc.Timeout == 0 {
			hc.Timeout = Duration(DefaultHealthTimeout)
		}
		d.HealthCheck = &hc
	}
	if d.TLS != nil {
		t := *d.TLS
		d.TLS = &t
	}
	return d
}

// WithDefaults returns a deep copy of e with every deployment defaulted.
func (e Endpoint) WithDefaults() Endpoint {
	deps := make([]Deployment, len(e.Deployments))
	for i, d := range e.Deployments {
		deps[i] = d.WithDefaults()
	}
	e.Deployments = deps
	e.Traffic = e.Traffic.Clone()
	e.Mirror = e.Mirror.Clone()
	e.Compare = e.Compare.Clone()
	if len(e.Traffic) == 0 && len(deps) > 0 {
		e.Traffic = Weights{deps[0].Name: Full}
	}
	if e.Mirror == nil {
		e.Mirror = Weights{}
	}
	return e
}

// Clone returns a deep copy of e.
// Redacted is a copy of the endpoint with its webhooks and its plan's
// confirm-promotion webhook redacted (Webhook.Redacted): what a reader
// without the right to change it may see, and what goes into events,
// which every token reads and webhooks receive.
func (e Endpoint) Redacted() Endpoint {
	e = e.Clone()
	for i, h := range e.Webhooks {
		e.Webhooks[i] = h.Redacted()
	}
	if e.Rollout != nil {
		p := e.Rollout.Redacted()
		e.Rollout = &p
	}
	return e
}

func (e Endpoint) Clone() Endpoint {
	deps := make([]Deployment, len(e.Deployments))
	for i, d := range e.Deployments {
		d.Backends = append([]string(nil), d.Backends...)
		if d.HealthCheck != nil {
			hc := *d.HealthCheck
			d.HealthCheck = &hc
		}
		if d.TLS != nil {
			t := *d.TLS
			d.TLS = &t
		}
		deps[i] = d
	}
	e.Deployments = deps
	e.Traffic = e.Traffic.Clone()
	e.Mirror = e.Mirror.Clone()
	e.Compare = e.Compare.Clone()
	e.Override = e.Override.Clone()
	if e.Rollout != nil {
		plan := e.Rollout.Clone()
		e.Rollout = &plan
	}
	e.Webhooks = append([]Webhook(nil), e.Webhooks...)
	return e
}

// Deployment returns the deployment named name and its index.
func (e Endpoint) Deployment(name string) (Deployment, int, bool) {
	for i, d := range e.Deployments {
		if d.Name == name {
			return d, i, true
		}
	}
	return Deployment{}, -1, false
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]{0,62})$`)

// ValidateName checks a name used in URLs and headers.
func ValidateName(field, name string) error {
	if name == "" {
		return Problemf(field, "is required")
	}
	if !nameRE.MatchString(name) {
		return Problemf(field, "%q is not a valid name: use 1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit", name)
	}
	return nil
}

// Validate checks the endpoint, its traffic and its mirror, and returns
// every problem with its field path relative to the endpoint. Empty
// traffic is allowed here (WithDefaults fills it).
func (e Endpoint) Validate() error {
	var errs []error
	errs = append(errs, ValidateName("name", e.Name))
	if len(e.Deployments) == 0 {
		errs = append(errs, Problemf("deployments", "at least one deployment is required"))
	}
	seen := map[string]int{}
	for i, d := range e.Deployments {
		path := fmt.Sprintf("deployments[%d]", i)
		errs = append(errs, Prefix(path, d.Validate()))
		if j, dup := seen[d.Name]; dup && d.Name != "" {
			errs = append(errs, Problemf(path+".name", "duplicate deployment %q (also deployments[%d])", d.Name, j))
		} else {
			seen[d.Name] = i
		}
	}
	if len(e.Traffic) > 0 {
		errs = append(errs, Prefix("traffic", ValidateTraffic(e, e.Traffic)))
	}
	errs = append(errs, Prefix("mirror", ValidateMirror(e, e.Mirror)))
	if e.StickyHeader != "" && !validHeaderName(e.StickyHeader) {
		errs = append(errs, Problemf("sticky_header", "%q is not a valid HTTP header name", e.StickyHeader))
	}
	errs = append(errs, Prefix("override", e.Override.Validate()))
	errs = append(errs, Prefix("compare", e.Compare.Validate()))
	errs = append(errs, Prefix("rollout", e.Rollout.Validate()))
	for i, w := range e.Webhooks {
		errs = append(errs, Prefix(fmt.Sprintf("webhooks[%d]", i), w.Validate()))
	}
	return errors.Join(errs...)
}

func validHeaderName(s string) bool {
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return s != ""
}

// Validate checks one deployment and returns every problem found.
func (d Deployment) Validate() error {
	var errs []error
	errs = append(errs, ValidateName("name", d.Name))
	if len(d.Backends) == 0 {
		errs = append(errs, Problemf("backends", "at least one backend URL is required"))
	}
	for i, b := range d.Backends {
		if err := validateBackendURL(b); err != nil {
			errs = append(errs, Problemf(fmt.Sprintf("backends[%d]", i), "%v", err))
		}
	}
	if d.Timeout < 0 {
		errs = append(errs, Problemf("timeout", "must not be negative"))
	}
	if d.StreamIdleTimeout < 0 {
		errs = append(errs, Problemf("stream_idle_timeout", "must not be negative"))
	}
	if d.MaxFails < 0 {
		errs = append(errs, Problemf("max_fails", "must not be negative"))
	}
	if d.FailTimeout < 0 {
		errs = append(errs, Problemf("fail_timeout", "must not be negative"))
	}
	errs = append(errs, Prefix("tls", d.TLS.Validate()))
	if hc := d.HealthCheck; hc != nil {
		if hc.Path == "" || hc.Path[0] != '/' {
			errs = append(errs, Problemf("health_check.path", "must start with '/', e.g. /v2/health/ready"))
		}
		if hc.Interval < 0 {
			errs = append(errs, Problemf("health_check.interval", "must not be negative"))
		}
		if hc.Timeout < 0 {
			errs = append(errs, Problemf("health_check.timeout", "must not be negative"))
		}
	}
	return errors.Join(errs...)
}

func validateBackendURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return fmt.Errorf("%q is not a valid URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q: host is missing", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: must not carry a query, fragment or user info", raw)
	}
	return nil
}

// ValidateTraffic checks traffic weights against the endpoint's
// deployments: every name known, every weight 0..100, sum exactly 100.
func ValidateTraffic(e Endpoint, w Weights) error {
	var errs []error
	if len(w) == 0 {
		return Problemf("", "traffic must give at least one deployment a weight; weights sum to 100")
	}
	for _, name := range w.Names() {
		if _, _, ok := e.Deployment(name); !ok {
			errs = append(errs, unknownDeployment(e, name))
		}
		if v := w[name]; v < 0 || v > Full {
			errs = append(errs, Problemf(name, "weight %s is outside 0..100", v))
		}
	}
	// With a name unknown the sum is no news: the name is the mistake.
	if s := w.Sum(); s != Full && len(errs) == 0 {
		errs = append(errs, Problemf("", "weights sum to %s, they must sum to 100", s))
	}
	return errors.Join(errs...)
}

// ValidateMirror checks mirror weights: every name known, each 0..100.
func ValidateMirror(e Endpoint, w Weights) error {
	var errs []error
	for _, name := range w.Names() {
		if _, _, ok := e.Deployment(name); !ok {
			errs = append(errs, unknownDeployment(e, name))
		}
		if v := w[name]; v < 0 || v > Full {
			errs = append(errs, Problemf(name, "mirror percent %s is outside 0..100", v))
		}
	}
	return errors.Join(errs...)
}

// CompleteTraffic turns a partial assignment into full weights: with two
// deployments and one weight given, the other gets the rest
// ("green=5" → blue 95, green 5). Otherwise the assignment is returned
// as given, to be validated as a whole.
func CompleteTraffic(e Endpoint, partial Weights) Weights {
	out := partial.Clone()
	if len(e.Deployments) != 2 || len(partial) != 1 {
		return out
	}
	for name := range partial {
		if _, _, known := e.Deployment(name); !known {
			return out
		}
	}
	for _, d := range e.Deployments {
		if _, given := partial[d.Name]; !given {
			if rest := Full - partial.Sum(); rest >= 0 {
				out[d.Name] = rest
			}
		}
	}
	return out
}
