package spec

import (
	"errors"
	"testing"
)

func TestParsePercent(t *testing.T) {
	tests := []struct {
		in   string
		want Percent
		err  bool
	}{
		{in: "0", want: 0},
		{in: "5", want: 500},
		{in: "5.5", want: 550},
		{in: "5.50", want: 550},
		{in: "12.25", want: 1225},
		{in: "0.05", want: 5},
		{in: "100", want: Full},
		{in: "100.00", want: Full},
		{in: " 5.5% ", want: 550},
		{in: "005", want: 500},
		{in: "", err: true},
		{in: "%", err: true},
		{in: "100.01", err: true},
		{in: "101", err: true},
		{in: "-1", err: true},
		{in: "+1", err: true},
		{in: "5.555", err: true},
		{in: "5.", err: true},
		{in: ".5", err: true},
		{in: "1e1", err: true},
		{in: "5%%", err: true},
		{in: "1000", err: true},
		{in: "NaN", err: true},
	}
	for _, tc := range tests {
		got, err := ParsePercent(tc.in)
		if tc.err {
			if !errors.Is(err, ErrPercentSyntax) {
				t.Errorf("ParsePercent(%q) = %v, %v; want ErrPercentSyntax", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePercent(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestPercentString(t *testing.T) {
	tests := []struct {
		p    Percent
		want string
	}{
		{0, "0"}, {5, "0.05"}, {50, "0.5"}, {550, "5.5"}, {1225, "12.25"}, {Full, "100"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("Percent(%d).String() = %q, want %q", int(tc.p), got, tc.want)
		}
	}
	// Every valid percent reads back from its string.
	for p := Percent(0); p <= Full; p++ {
		back, err := ParsePercent(p.String())
		if err != nil || back != p {
			t.Fatalf("ParsePercent(%q) = %d, %v; want %d", p.String(), back, err, int(p))
		}
	}
}

func TestPercentYAMLMethods(t *testing.T) {
	v, err := Percent(550).MarshalYAML()
	if err != nil || v != 5.5 {
		t.Errorf("Percent(550).MarshalYAML() = %v, %v; want 5.5", v, err)
	}
	var p Percent
	err = p.UnmarshalYAML(func(into any) error { *into.(*string) = "5.5%"; return nil })
	if err != nil || p != 550 {
		t.Errorf("UnmarshalYAML(5.5%%) = %d, %v; want 550", p, err)
	}
	err = p.UnmarshalYAML(func(into any) error { *into.(*string) = "5.555"; return nil })
	if !errors.Is(err, ErrPercentSyntax) {
		t.Errorf("UnmarshalYAML(5.555) = %v, want ErrPercentSyntax", err)
	}
	err = p.UnmarshalYAML(func(any) error { return errors.New("not a scalar") })
	if !errors.Is(err, ErrPercentSyntax) {
		t.Errorf("UnmarshalYAML(mapping) = %v, want ErrPercentSyntax", err)
	}
}

// FuzzParsePercent checks that ParsePercent never panics and that what it
// accepts is within 0..100 and reads back the same from String, from
// PercentFromFloat and through JSON.
func FuzzParsePercent(f *testing.F) {
	for _, s := range []string{"0", "5", "5.5", "12.25", "100", "100.00", " 5.5% ", "5.555", "-1", "1e1", ".5", "005", "99.99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePercent(s)
		if err != nil {
			if !errors.Is(err, ErrPercentSyntax) {
				t.Fatalf("ParsePercent(%q) error %v is not ErrPercentSyntax", s, err)
			}
			return
		}
		if p < 0 || p > Full {
			t.Fatalf("ParsePercent(%q) = %d, outside 0..100", s, int(p))
		}
		back, err := ParsePercent(p.String())
		if err != nil || back != p {
			t.Fatalf("ParsePercent(%q) = %d; ParsePercent(String() = %q) = %d, %v", s, int(p), p.String(), back, err)
		}
		if fl, err := PercentFromFloat(p.Float()); err != nil || fl != p {
			t.Fatalf("PercentFromFloat(%v) = %d, %v; want %d", p.Float(), fl, err, int(p))
		}
		js, _ := p.MarshalJSON()
		var j Percent
		if err := j.UnmarshalJSON(js); err != nil || j != p {
			t.Fatalf("UnmarshalJSON(%s) = %d, %v; want %d", js, j, err, int(p))
		}
	})
}
