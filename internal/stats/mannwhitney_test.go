package stats

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"testing"
)

const (
	debianPython = "/usr/bin/python3"
	goldenPath   = "testdata/mannwhitneyu_golden.json"
	generator    = "testdata/gen_mannwhitneyu.py"
)

type goldenCase struct {
	Name        string    `json:"name"`
	X           []float64 `json:"x"`
	Y           []float64 `json:"y"`
	Alternative string    `json:"alternative"`
	Method      string    `json:"method"`
	U           float64   `json:"U"`
	P           float64   `json:"P"`
}

func parseAlternative(t *testing.T, s string) Alternative {
	t.Helper()
	for _, a := range []Alternative{TwoSided, Less, Greater} {
		if a.String() == s {
			return a
		}
	}
	t.Fatalf("unknown alternative %q", s)
	return 0
}

func relClose(got, want, tol float64) bool {
	if got == want {
		return true
	}
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), math.Abs(got))
}

// TestMannWhitneyUMatchesScipy compares with scipy.stats.mannwhitneyu results that
// testdata/gen_mannwhitneyu.py produced (TestGoldenIsCurrent keeps them current).
func TestMannWhitneyUMatchesScipy(t *testing.T) {
	raw, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Cases) < 200 {
		t.Fatalf("golden has %d cases, want >= 200", len(golden.Cases))
	}
	for _, tc := range golden.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			got, err := MannWhitneyU(tc.X, tc.Y, parseAlternative(t, tc.Alternative))
			if err != nil {
				t.Fatal(err)
			}
			if !relClose(got.U, tc.U, 1e-9) {
				t.Errorf("U = %v, want %v", got.U, tc.U)
			}
			if !relClose(got.P, tc.P, 1e-9) {
				t.Errorf("P = %v, want %v (rel diff %.3g)", got.P, tc.P, math.Abs(got.P-tc.P)/tc.P)
			}
			if got.Method.String() != tc.Method {
				t.Errorf("Method = %v, want %v", got.Method, tc.Method)
			}
		})
	}
}

// TestGoldenIsCurrent re-runs the generator under Debian's python3 with scipy and
// requires the committed golden file to be exactly its output.
func TestGoldenIsCurrent(t *testing.T) {
	if _, err := os.Stat(debianPython); err != nil {
		t.Fatalf("%s not found: `make test` installs python3 and python3-scipy (apt-get install -y python3-scipy)", debianPython)
	}
	cmd := exec.Command(debianPython, generator)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run %s %s: %v\n%s\n`make test` installs python3-scipy (apt-get install -y python3-scipy)", debianPython, generator, err, stderr.String())
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("%s is stale: regenerate with %s %s > %s", goldenPath, debianPython, generator, goldenPath)
	}
}

func TestMannWhitneyUErrors(t *testing.T) {
	tests := []struct {
		name string
		x, y []float64
		alt  Alternative
		want error
	}{
		{"empty x", nil, []float64{1}, TwoSided, ErrEmptySample},
		{"empty y", []float64{1}, []float64{}, Less, ErrEmptySample},
		{"nan", []float64{1, math.NaN()}, []float64{2}, Greater, ErrNaN},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MannWhitneyU(tc.x, tc.y, tc.alt)
			if !errors.Is(err, tc.want) {
				t.Errorf("MannWhitneyU(%v, %v) error = %v, want %v", tc.x, tc.y, err, tc.want)
			}
		})
	}
	if _, err := MannWhitneyU([]float64{1}, []float64{2}, Alternative(7)); err == nil {
		t.Error("MannWhitneyU with Alternative(7): no error")
	}
}

func TestMannWhitneyUAllTied(t *testing.T) {
	got, err := MannWhitneyU([]float64{3, 3, 3}, []float64{3, 3}, TwoSided)
	if err != nil {
		t.Fatal(err)
	}
	if got.U != 3 || got.P != 1 {
		t.Errorf("MannWhitneyU(all tied) = U %v P %v, want U 3 P 1", got.U, got.P)
	}
}
