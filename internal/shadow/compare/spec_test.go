package compare_test

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/shadow/compare"
	"github.com/modelgate/modelgate/internal/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/config/bad/*.txt from the current messages")

func f64(v float64) *float64 { return &v }
func boolp(v bool) *bool     { return &v }

func problemLines(err error) []string {
	var out []string
	for _, p := range spec.Problems(err) {
		out = append(out, p.Error())
	}
	return out
}

// TestConfigGood checks that config.Parse decodes an endpoint's compare
// section into spec.Compare and that New compiles it.
func TestConfigGood(t *testing.T) {
	data, err := os.ReadFile("testdata/config/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(data)
	if err != nil {
		t.Fatalf("Parse(good.yaml) = %v", err)
	}
	want := []*spec.Compare{
		{
			Protocol: spec.ProtocolOIPV2, Comparator: spec.ComparatorArgmax,
			RTol: f64(1e-3), ATol: f64(0), EqualNaN: boolp(false), Outputs: []string{"probs"},
			Similarity: f64(0.5), MaxBodyBytes: 65536, ShadowTimeout: spec.Duration(2 * time.Second),
			Queue: 50, Workers: 2,
		},
		{Protocol: spec.ProtocolJSON, Paths: []string{"result.scores", "items.#.score"}},
	}
	for i, e := range f.Endpoints {
		if diff := cmp.Diff(want[i], e.Compare); diff != "" {
			t.Errorf("endpoints[%d].compare (-want +got):\n%s", i, diff)
		}
		if _, err := compare.New(*e.Compare); err != nil {
			t.Errorf("New(endpoints[%d].compare) = %v", i, err)
		}
	}
	eps := f.EndpointsWithDefaults()
	*eps[0].Compare.RTol = 9
	eps[0].Compare.Outputs[0] = "changed"
	if *f.Endpoints[0].Compare.RTol != 1e-3 || f.Endpoints[0].Compare.Outputs[0] != "probs" {
		t.Errorf("EndpointsWithDefaults shares compare settings with the file: %+v", f.Endpoints[0].Compare)
	}
}

// TestConfigBad parses every testdata/config/bad/*.yaml and checks all of
// its messages, in order, against the .txt beside it (-update rewrites them).
func TestConfigBad(t *testing.T) {
	files, err := filepath.Glob("testdata/config/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/config/bad files: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := config.Parse(data)
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, nil; want problems", file, f)
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
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Parse(%s) problems (-want +got):\n%s", file, diff)
			}
		})
	}
}

func TestCompareValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *spec.Compare
		want []string
	}{
		{"nil", nil, nil},
		{"zero", &spec.Compare{}, nil},
		{"zero tolerances are allowed", &spec.Compare{RTol: f64(0), ATol: f64(0), Similarity: f64(0)}, nil},
		{"every protocol", &spec.Compare{Protocol: spec.ProtocolRaw, Comparator: spec.ComparatorSimilarity}, nil},
		{"outputs with auto", &spec.Compare{Outputs: []string{"a", "b"}}, nil},
		{"infinite tolerance", &spec.Compare{ATol: f64(math.Inf(1))}, []string{"atol: must be a finite number, got +Inf"}},
		{"similarity above 1", &spec.Compare{Similarity: f64(2)}, []string{"similarity: must be from 0 to 1, got 2"}},
		{"outputs with kserve", &spec.Compare{Protocol: spec.ProtocolKServeV1, Outputs: []string{"a"}},
			[]string{"outputs: only used with protocol oip_v2 (or auto)"}},
		{"empty path", &spec.Compare{Protocol: spec.ProtocolJSON, Paths: []string{""}}, []string{"paths[0]: must not be empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, problemLines(tc.c.Validate())); diff != "" {
				t.Errorf("Validate(%+v) (-want +got):\n%s", tc.c, diff)
			}
		})
	}
}

func TestEndpointValidateCompare(t *testing.T) {
	e := spec.Endpoint{
		Name:        "fraud",
		Deployments: []spec.Deployment{{Name: "blue", Backends: []string{"http://127.0.0.1:1"}}},
		Compare:     &spec.Compare{Queue: -1},
	}
	want := []string{"compare.queue: must not be negative"}
	if diff := cmp.Diff(want, problemLines(e.Validate())); diff != "" {
		t.Errorf("Endpoint.Validate (-want +got):\n%s", diff)
	}
}

func TestCompareWithDefaults(t *testing.T) {
	var unset *spec.Compare
	want := spec.Compare{
		Protocol: spec.ProtocolAuto, RTol: f64(1e-5), ATol: f64(1e-8), EqualNaN: boolp(true), Similarity: f64(0.8),
		MaxBodyBytes: 1 << 20, ShadowTimeout: spec.Duration(10 * time.Second), Queue: 1000, Workers: 4, SampleRequests: boolp(true),
	}
	if diff := cmp.Diff(want, unset.WithDefaults()); diff != "" {
		t.Errorf("(*Compare)(nil).WithDefaults() (-want +got):\n%s", diff)
	}
	got := (&spec.Compare{Protocol: spec.ProtocolOpenAI, RTol: f64(0), EqualNaN: boolp(false)}).WithDefaults()
	if got.Comparator != spec.ComparatorSimilarity || *got.RTol != 0 || *got.EqualNaN {
		t.Errorf("WithDefaults kept %+v, want comparator similarity, rtol 0 and equal_nan false", got)
	}
}

func TestCompareClone(t *testing.T) {
	c := &spec.Compare{RTol: f64(1), ATol: f64(2), EqualNaN: boolp(true), Similarity: f64(0.5), Paths: []string{"a"}, Outputs: []string{"b"}}
	d := c.Clone()
	if diff := cmp.Diff(c, d); diff != "" {
		t.Fatalf("Clone (-orig +clone):\n%s", diff)
	}
	*d.RTol, *d.ATol, *d.EqualNaN, *d.Similarity, d.Paths[0], d.Outputs[0] = 9, 9, false, 9, "x", "y"
	if *c.RTol != 1 || *c.ATol != 2 || !*c.EqualNaN || *c.Similarity != 0.5 || c.Paths[0] != "a" || c.Outputs[0] != "b" {
		t.Errorf("changing the clone changed the original: %+v", c)
	}
	e := spec.Endpoint{Compare: c}
	if e.Clone().Compare == c {
		t.Errorf("Endpoint.Clone shares Compare")
	}
	if (*spec.Compare)(nil).Clone() != nil {
		t.Errorf("(*Compare)(nil).Clone() != nil")
	}
}
