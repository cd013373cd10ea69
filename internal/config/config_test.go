package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modelgate/modelgate/internal/spec"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.txt from the current messages")

// problemLines returns every problem of err as "field: message", in order.
func problemLines(err error) []string {
	var out []string
	for _, p := range spec.Problems(err) {
		out = append(out, p.Error())
	}
	return out
}

// TestBadFiles parses every testdata/bad/*.yaml and checks all of its
// messages, in order, against the .txt beside it.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/bad files: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, nil; want problems", file, f)
			}
			if f != nil {
				t.Errorf("Parse(%s) returned a file with an error", file)
			}
			for _, e := range flatten(err) {
				var p *spec.Problem
				if !errors.As(e, &p) {
					t.Errorf("Parse(%s): %v is not a *spec.Problem", file, e)
				}
			}
			got := strings.Join(problemLines(err), "\n") + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".txt"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Parse(%s) problems (-want +got):\n%s", file, diff)
			}
		})
	}
}

func flatten(err error) []error {
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range m.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func TestGoldenFilesHaveInputs(t *testing.T) {
	goldens, _ := filepath.Glob("testdata/bad/*.txt")
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".txt") + ".yaml"); err != nil {
			t.Errorf("%s has no .yaml beside it", g)
		}
	}
}

func dur(s string) spec.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return spec.Duration(d)
}

func TestParseFull(t *testing.T) {
	f, err := Load("testdata/good/full.yaml")
	if err != nil {
		t.Fatalf("Load(full.yaml) = %v", err)
	}
	want := &File{
		Listen: "0.0.0.0:8080",
		Admin: Admin{Listen: "127.0.0.1:8081", TokenFile: "/var/lib/modelgate/admin.token",
			ReadOnlyTokenFile: "/var/lib/modelgate/viewer.token", TokenOverlap: spec.Duration(time.Hour)},
		State:           State{Path: "/var/lib/modelgate/modelgate.db"},
		MaxRequestBytes: 5 << 20,
		Endpoints: []spec.Endpoint{
			{
				Name: "fraud",
				Deployments: []spec.Deployment{
					{
						Name:              "blue",
						Backends:          []string{"http://10.0.0.5:9001", "http://10.0.0.6:9001/v1"},
						Timeout:           dur("10s"),
						StreamIdleTimeout: dur("1m"),
						MaxFails:          3,
						FailTimeout:       dur("10s"),
						HealthCheck:       &spec.HealthCheck{Path: "/v2/health/ready", Interval: dur("5s"), Timeout: dur("2s")},
					},
					{Name: "green", Backends: []string{"https://green.models.internal:8443"}, Timeout: dur("2.5s")},
				},
				Traffic:      spec.Weights{"blue": 9450, "green": 550},
				Mirror:       spec.Weights{"green": 1000},
				StickyHeader: "X-User-Id",
			},
			{Name: "churn", Deployments: []spec.Deployment{{Name: "v1", Backends: []string{"http://127.0.0.1:9101"}}}},
		},
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Load(full.yaml) (-want +got):\n%s", diff)
	}
	if got, want := f.TokenPath(), "/var/lib/modelgate/admin.token"; got != want {
		t.Errorf("TokenPath() = %q, want %q", got, want)
	}
	eps := f.EndpointsWithDefaults()
	if diff := cmp.Diff(spec.Weights{"v1": spec.Full}, eps[1].Traffic); diff != "" {
		t.Errorf("EndpointsWithDefaults()[1].Traffic (-want +got):\n%s", diff)
	}
	if got := eps[0].Deployments[1].StreamIdleTimeout.D(); got != spec.DefaultStreamIdleTimeout {
		t.Errorf("EndpointsWithDefaults()[0].Deployments[1].StreamIdleTimeout = %v, want %v", got, spec.DefaultStreamIdleTimeout)
	}
	if f.Endpoints[1].Traffic != nil || f.Endpoints[0].Deployments[1].StreamIdleTimeout != 0 {
		t.Errorf("EndpointsWithDefaults changed the file's endpoints: %+v", f.Endpoints)
	}
}

func TestParseGood(t *testing.T) {
	minimal := []spec.Endpoint{{Name: "fraud", Deployments: []spec.Deployment{{Name: "blue", Backends: []string{"http://127.0.0.1:9001"}}}}}
	replicas := []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002"}
	tests := []struct {
		file   string
		listen string
		eps    []spec.Endpoint
	}{
		{file: "empty.yaml", listen: DefaultListen},
		{file: "comments-only.yaml", listen: DefaultListen},
		{file: "minimal.yaml", listen: DefaultListen, eps: minimal},
		{file: "json.yaml", listen: ":9000", eps: []spec.Endpoint{{
			Name: "fraud",
			Deployments: []spec.Deployment{
				{Name: "blue", Backends: []string{"http://127.0.0.1:9001"}},
				{Name: "green", Backends: []string{"http://127.0.0.1:9002"}, Timeout: dur("3s")},
			},
			Traffic: spec.Weights{"blue": 9975, "green": 25},
			Mirror:  spec.Weights{"green": spec.Full},
		}}},
		{file: "anchors.yaml", listen: DefaultListen, eps: []spec.Endpoint{
			{Name: "fraud", Deployments: []spec.Deployment{
				{Name: "blue", Backends: replicas, Timeout: dur("3s"), MaxFails: 5},
				{Name: "green", Backends: replicas, Timeout: dur("4s"), MaxFails: 5},
			}},
			{Name: "churn", Deployments: []spec.Deployment{{Name: "v1", Backends: replicas}}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			f, err := Load(filepath.Join("testdata/good", tc.file))
			if err != nil {
				t.Fatalf("Load(%s) = %v", tc.file, err)
			}
			want := Default()
			want.Listen = tc.listen
			want.Endpoints = tc.eps
			if diff := cmp.Diff(want, f); diff != "" {
				t.Errorf("Load(%s) (-want +got):\n%s", tc.file, diff)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	f, err := Parse(nil)
	if err != nil {
		t.Fatalf("Parse(nil) = %v", err)
	}
	want := &File{
		Listen:          "127.0.0.1:8080",
		Admin:           Admin{Listen: "127.0.0.1:8081", TokenOverlap: spec.Duration(10 * time.Minute)},
		State:           State{Path: "modelgate.db"},
		MaxRequestBytes: 10 << 20,
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Parse(nil) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, Default()); diff != "" {
		t.Errorf("Default() (-want +got):\n%s", diff)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	// Null, empty and zero values mean the default too.
	f, err = Parse([]byte("listen: ''\nadmin: ~\nstate: {path: }\nmax_request_bytes: 0\nendpoints:\n"))
	if err != nil {
		t.Fatalf("Parse(zeros) = %v", err)
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Parse(zeros) (-want +got):\n%s", diff)
	}
}

func TestValidateZeroFile(t *testing.T) {
	got := problemLines((&File{}).Validate())
	want := []string{
		"listen: is required, e.g. 127.0.0.1:8080",
		"admin.listen: is required, e.g. 127.0.0.1:8080",
		"state.path: is required",
		"max_request_bytes: must be greater than 0, got 0",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("File{}.Validate() (-want +got):\n%s", diff)
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		listen, admin string
		ok            bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8081", true},
		{":8080", "localhost:8081", true},
		{"[::1]:8080", "[::]:8081", true},
		{"[fe80::1%eth0]:8080", "gateway.internal:8081", true},
		{":0", ":0", true}, // tests bind free ports
		{"127.0.0.1:8080", "127.0.0.2:8080", true},
		{"127.0.0.1:8080", "0.0.0.0:8080", false},
		{"[::]:8080", "127.0.0.1:8080", false},
		{"127.0.0.1:8080", "127.0.0.1:8080", false},
		{"-bad-:80", ":81", false},
		{"a..b:80", ":81", false},
		{"127.0.0.1:", ":81", false},
		{"127.0.0.1:-1", ":81", false},
	}
	for _, tc := range tests {
		f := Default()
		f.Listen, f.Admin.Listen = tc.listen, tc.admin
		err := f.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(listen %q, admin %q) = %v, want ok %v", tc.listen, tc.admin, err, tc.ok)
		}
	}
}

func TestTokenPath(t *testing.T) {
	tests := []struct {
		state, token, want string
	}{
		{DefaultStatePath, "", "admin.token"},
		{"/var/lib/modelgate/modelgate.db", "", "/var/lib/modelgate/admin.token"},
		{"data/gate.db", "", filepath.Join("data", "admin.token")},
		{"/var/lib/modelgate/modelgate.db", "/etc/modelgate/token", "/etc/modelgate/token"},
	}
	for _, tc := range tests {
		f := &File{State: State{Path: tc.state}, Admin: Admin{TokenFile: tc.token}}
		if got := f.TokenPath(); got != tc.want {
			t.Errorf("TokenPath(state %q, token_file %q) = %q, want %q", tc.state, tc.token, got, tc.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "testdata/does-not-exist.yaml") {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}

	_, err = Load("testdata/bad/traffic-unknown.yaml")
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != "testdata/bad/traffic-unknown.yaml" {
		t.Fatalf("Load(bad) = %v, want a *FileError", err)
	}
	want := `testdata/bad/traffic-unknown.yaml: endpoints[0].traffic.grean: unknown deployment "grean" in endpoint "fraud"; did you mean "green"? (its deployments: blue, green) (line 8)
testdata/bad/traffic-unknown.yaml: endpoints[0].mirror.gren: unknown deployment "gren" in endpoint "fraud"; did you mean "green"? (its deployments: blue, green) (line 9)`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Load(bad).Error() (-want +got):\n%s", diff)
	}
	wantProblems := []spec.Problem{
		{Field: "endpoints[0].traffic.grean", Message: `unknown deployment "grean" in endpoint "fraud"; did you mean "green"? (its deployments: blue, green) (line 8)`},
		{Field: "endpoints[0].mirror.gren", Message: `unknown deployment "gren" in endpoint "fraud"; did you mean "green"? (its deployments: blue, green) (line 9)`},
	}
	if diff := cmp.Diff(wantProblems, spec.Problems(err)); diff != "" {
		t.Errorf("spec.Problems(Load(bad)) (-want +got):\n%s", diff)
	}
}

// TestDecode covers the generic decoder as the admin API uses it: JSON
// request bodies into spec types, on one line, so without line numbers.
func TestDecode(t *testing.T) {
	t.Run("deployment", func(t *testing.T) {
		var d spec.Deployment
		err := Decode([]byte(`{"name": "green", "backends": ["http://127.0.0.1:9002"], "timeout": "3s", "health_check": {"path": "/ready"}}`), &d)
		if err != nil {
			t.Fatalf("Decode(deployment) = %v", err)
		}
		want := spec.Deployment{Name: "green", Backends: []string{"http://127.0.0.1:9002"}, Timeout: dur("3s"), HealthCheck: &spec.HealthCheck{Path: "/ready"}}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("Decode(deployment) (-want +got):\n%s", diff)
		}
	})
	tests := []struct {
		name  string
		input string
		into  func() any
		want  []string
		value any
	}{
		{
			name:  "weights",
			input: `{"blue": 95, "green": 5}`,
			into:  func() any { return new(spec.Weights) },
			value: &spec.Weights{"blue": 9500, "green": 500},
		},
		{
			name:  "weights with decimals and percent signs",
			input: `{"blue": 94.5, "green": "5.5%"}`,
			into:  func() any { return new(spec.Weights) },
			value: &spec.Weights{"blue": 9450, "green": 550},
		},
		{
			name:  "tab-indented JSON",
			input: "{\n\t\"blue\": 95,\n\t\"green\": 5\n}\n",
			into:  func() any { return new(spec.Weights) },
			value: &spec.Weights{"blue": 9500, "green": 500},
		},
		{
			name:  "weights problems",
			input: `{"blue": 95.125, "green": true, "white": {}, "blue": 1}`,
			into:  func() any { return new(spec.Weights) },
			want: []string{
				"blue: duplicate key",
				`blue: invalid percent "95.125": must be a number from 0 to 100 with at most 2 decimals`,
				`green: invalid percent "true": must be a number from 0 to 100 with at most 2 decimals`,
				"white: expected a percent such as 5 or 12.5, got a mapping",
			},
		},
		{
			name:  "deployment problems",
			input: `{"name": 5, "backends": "http://x", "timeout": "1h1x", "colour": "blue", "health_check": []}`,
			into:  func() any { return new(spec.Deployment) },
			want: []string{
				"backends: expected a list, got \"http://x\"",
				`timeout: invalid duration "1h1x": use a number with a unit, e.g. 500ms, 10s, 1m`,
				"colour: unknown key",
				"health_check: expected a mapping, got a list",
			},
		},
		{
			name:  "not a mapping",
			input: `[1, 2]`,
			into:  func() any { return new(spec.Weights) },
			want:  []string{"expected a mapping, got a list"},
		},
		{
			name:  "empty leaves the value",
			input: "  \n",
			into:  func() any { return &spec.Weights{"blue": 1} },
			value: &spec.Weights{"blue": 1},
		},
		{
			name:  "syntax",
			input: `{"blue": 95`,
			into:  func() any { return new(spec.Weights) },
			want:  []string{"invalid YAML: line 1: did not find expected ',' or '}'"},
		},
		{
			name:  "scalars",
			input: "s: !!binary aGVsbG8=\nb: true\nu: 7\nf: 1.5\ni: 3\nany: {x: [1]}\np: 4\n",
			into:  func() any { return new(scalars) },
			value: &scalars{S: "hello", B: true, U: 7, F: 1.5, I: 3, Any: map[string]any{"x": []any{1}}, P: ptr(4)},
		},
		{
			name:  "scalar problems",
			input: "s: [x]\nb: yes please\nu: -1\nf: x\ni: 300\ni8: 300\nhidden: 1\nskip: 1\ns: dup\n",
			into:  func() any { return new(scalars) },
			want: []string{
				"s: duplicate key on line 9 (first on line 1)",
				`s: expected a string, got a list (line 1)`,
				`b: expected true or false, got "yes please" (line 2)`,
				`u: expected a non-negative integer, got "-1" (line 3)`,
				`f: expected a number, got "x" (line 4)`,
				`i8: 300 is out of range (line 6)`,
				"hidden: unknown key (line 7)",
				"skip: unknown key (line 8)",
			},
		},
		{
			name:  "unsupported Go type",
			input: "c: 1\n",
			into:  func() any { return new(struct{ C chan int }) },
			want:  []string{"c: cannot decode into Go type chan int"},
		},
		{
			name:  "alias expansion bomb",
			input: bomb,
			into:  func() any { return new(bombTarget) },
			want:  []string{"d[0][6]: too many alias expansions: the document expands to far more values than it holds (line 2)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			into := tc.into()
			err := Decode([]byte(tc.input), into)
			if diff := cmp.Diff(tc.want, problemLines(err)); diff != "" {
				t.Errorf("Decode(%q) problems (-want +got):\n%s", tc.input, diff)
			}
			if tc.value != nil {
				if diff := cmp.Diff(tc.value, into, cmpopts.IgnoreUnexported(scalars{})); diff != "" {
					t.Errorf("Decode(%q) value (-want +got):\n%s", tc.input, diff)
				}
			}
		})
	}
}

// bomb is a "billion laughs" document: a few lines that expand to 10^9 values.
const bomb = `a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
`

type bombTarget struct {
	A []string
	B [][]string
	C [][][]string
	D [][][][]string
	E [][][][][]string
	F [][][][][][]string
	G [][][][][][][]string
	H [][][][][][][][]string
	I [][][][][][][][][]string
}

type scalars struct {
	S    string  `yaml:"s"`
	B    bool    `yaml:"b"`
	U    uint    `yaml:"u"`
	F    float64 `yaml:"f"`
	I    int     `yaml:"i"`
	I8   int8    `yaml:"i8"`
	Any  any     `yaml:"any"`
	P    *int
	Skip string `yaml:"-"`
	//lint:ignore U1000 an unexported field the decoder must not see ("hidden: 1" is an unknown key)
	hidden string
}

func ptr[T any](v T) *T { return &v }

func TestDecodeNeedsPointer(t *testing.T) {
	var w spec.Weights
	for _, into := range []any{w, nil, (*spec.Weights)(nil)} {
		if err := Decode([]byte("a: 1"), into); err == nil || len(spec.Problems(err)) != 1 {
			t.Errorf("Decode(%T) = %v, want one plain error", into, err)
		}
	}
}

// TestPercentYAML checks the spec.Percent YAML methods that make a
// marshalled File read back the same, also with yaml.v3 alone.
func TestPercentYAML(t *testing.T) {
	w := spec.Weights{"blue": 9450, "green": 550, "white": 5, "zero": 0}
	out, err := yaml.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "blue: 94.5\ngreen: 5.5\nwhite: 0.05\nzero: 0\n"; got != want {
		t.Errorf("yaml.Marshal(%v) = %q, want %q", w, got, want)
	}
	var back spec.Weights
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("yaml.Unmarshal(%q) = %v", out, err)
	}
	if diff := cmp.Diff(w, back); diff != "" {
		t.Errorf("yaml round trip (-want +got):\n%s", diff)
	}
	if err := yaml.Unmarshal([]byte("green: 5.555"), &back); err == nil {
		t.Errorf("yaml.Unmarshal(green: 5.555) = nil, want an error")
	}
}

func TestRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, data)
	}
}

// checkRoundTrip parses data and, when it is valid, checks that the File
// validates and that marshalling and parsing it again gives the same File.
func checkRoundTrip(t *testing.T, data []byte) {
	t.Helper()
	f, err := Parse(data)
	if err != nil {
		for _, p := range spec.Problems(err) {
			if p.Message == "" {
				t.Fatalf("Parse(%q): empty problem message at %q", data, p.Field)
			}
		}
		return
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("Parse(%q) gave a file that does not validate: %v", data, err)
	}
	out, err := yaml.Marshal(f)
	if err != nil {
		t.Fatalf("yaml.Marshal(Parse(%q)) = %v", data, err)
	}
	g, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(yaml.Marshal(Parse(%q))) = %v\nmarshalled:\n%s", data, err, out)
	}
	if diff := cmp.Diff(f, g, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("round trip of %q (-first +second):\n%s\nmarshalled:\n%s", data, diff, out)
	}
}

func TestParseAssignments(t *testing.T) {
	tests := []struct {
		args []string
		want spec.Weights
		errs []string
	}{
		{args: []string{"blue=95", "green=5"}, want: spec.Weights{"blue": 9500, "green": 500}},
		{args: []string{"green=5.5%", "blue=94.50"}, want: spec.Weights{"blue": 9450, "green": 550}},
		{args: []string{"blue=95,green=5"}, want: spec.Weights{"blue": 9500, "green": 500}},
		{args: []string{"blue=95 green=5", "white=0"}, want: spec.Weights{"blue": 9500, "green": 500, "white": 0}},
		{args: []string{"green=100"}, want: spec.Weights{"green": spec.Full}},
		{args: nil, errs: []string{"expected at least one DEPLOYMENT=PERCENT, e.g. blue=95 green=5"}},
		{args: []string{"", ","}, errs: []string{"expected at least one DEPLOYMENT=PERCENT, e.g. blue=95 green=5"}},
		{
			args: []string{"blue", "=5", "Blue=5", "green=5.555", "white=abc", "blue=1", "blue=2", "x=101"},
			errs: []string{
				`"blue": expected DEPLOYMENT=PERCENT, e.g. green=5`,
				`"=5": deployment name is missing`,
				`"Blue=5": "Blue" is not a valid name: use 1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit`,
				`green: "green=5.555": invalid percent "5.555": must be a number from 0 to 100 with at most 2 decimals`,
				`white: "white=abc": invalid percent "abc": must be a number from 0 to 100 with at most 2 decimals`,
				`blue: "blue=2": deployment "blue" is already given ("blue=1")`,
				`x: "x=101": invalid percent "101": must be a number from 0 to 100 with at most 2 decimals`,
			},
		},
	}
	for _, tc := range tests {
		got, err := ParseAssignments(tc.args)
		if diff := cmp.Diff(tc.errs, problemLines(err)); diff != "" {
			t.Errorf("ParseAssignments(%q) problems (-want +got):\n%s", tc.args, diff)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseAssignments(%q) (-want +got):\n%s", tc.args, diff)
		}
	}
}

func TestLimits(t *testing.T) {
	f, err := Parse([]byte("limits: {max_connections: 500, max_headers: 50, max_uri_bytes: 4096, send_timeout: 30s}\n"))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	want := Limits{MaxConnections: 500, MaxHeaders: 50, MaxURIBytes: 4096, SendTimeout: spec.Duration(30 * time.Second)}
	if f.Limits != want {
		t.Errorf("limits = %+v, want %+v", f.Limits, want)
	}
	_, err = Parse([]byte("limits: {max_connections: -1, max_uri_bytes: 20000, send_timeout: -1s}\n"))
	got := problemLines(err)
	wantProblems := []string{
		"limits.max_connections: must not be negative, got -1 (0: the default)",
		"limits.max_uri_bytes: must be at most 16384 (a request head must fit the 16 KiB head buffer), got 20000",
		"limits.send_timeout: must not be negative, got -1s (0: the default, 60s)",
	}
	if diff := cmp.Diff(wantProblems, got); diff != "" {
		t.Errorf("invalid limits (-want +got):\n%s", diff)
	}
}
