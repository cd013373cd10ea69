package telemetry

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestSketchJSONRoundTrip(t *testing.T) {
	var s Sketch
	for _, d := range []time.Duration{time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 250 * time.Millisecond, 2 * time.Hour} {
		s.Add(d, 2)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got Sketch
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip of %s: got %+v, want %+v", b, got, s)
	}
	for _, q := range []float64{0, 0.5, 0.99, 1} {
		if got.Quantile(q) != s.Quantile(q) {
			t.Errorf("q%.2f: %v after the trip, %v before", q, got.Quantile(q), s.Quantile(q))
		}
	}

	var empty Sketch
	if err := json.Unmarshal([]byte(`{"offset":7,"counts":[0,0]}`), &empty); err != nil || empty.Count() != 0 {
		t.Fatalf("zeros: %+v, %v", empty, err)
	}
	b, _ = json.Marshal(Sketch{})
	if err := json.Unmarshal(b, &empty); err != nil || empty.Count() != 0 {
		t.Fatalf("empty %s: %+v, %v", b, empty, err)
	}
}

func TestSketchJSONTrimsAndRefuses(t *testing.T) {
	var s Sketch
	if err := json.Unmarshal([]byte(`{"offset":10,"counts":[0,4,0,1,0]}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.offset != 11 || len(s.counts) != 3 || s.Count() != 5 {
		t.Fatalf("not trimmed: %+v", s)
	}
	for _, in := range []string{
		`{"offset":-1,"counts":[1]}`,
		`{"offset":1159,"counts":[1]}`,
		`{"offset":1100,"counts":[` + zeros(59) + `1]}`,
		`{"offset":0,"counts":[18446744073709551615,1]}`,
		`{"offset":0,"counts":[-1]}`,
		`[1,2]`,
	} {
		var s Sketch
		if err := json.Unmarshal([]byte(in), &s); !errors.Is(err, ErrSketch) {
			t.Errorf("%s: err %v, want ErrSketch", in, err)
		}
	}
}

func zeros(n int) string {
	b := make([]byte, 0, 2*n)
	for range n {
		b = append(b, '0', ',')
	}
	return string(b)
}

func TestSliceJSONRoundTrip(t *testing.T) {
	sl := Slice{Start: time.Unix(1700000000, 0).UTC(), Span: 400 * time.Millisecond, Open: true, Requests: 12, SplitRequests: 10,
		Errors: 3, ClientErrors: 1, SplitErrors: 2, SplitClientErrors: 1}
	sl.Latency.Add(5*time.Millisecond, 10)
	sl.TTFB.Add(time.Millisecond, 10)
	b, err := json.Marshal(sl)
	if err != nil {
		t.Fatal(err)
	}
	var got Slice
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sl) {
		t.Fatalf("round trip of %s:\n got %+v\nwant %+v", b, got, sl)
	}
}

// FuzzSketchJSON: any input either is refused or reads as a sketch that
// keeps the layout's invariants (in range, trimmed, its total the sum of
// its counts) and survives a second trip unchanged.
func FuzzSketchJSON(f *testing.F) {
	f.Add([]byte(`{"offset":10,"counts":[0,4,0,1,0]}`))
	f.Add([]byte(`{"offset":0,"counts":[]}`))
	f.Add([]byte(`{"offset":1158,"counts":[1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Sketch
		if err := json.Unmarshal(b, &s); err != nil {
			return
		}
		var sum uint64
		for _, c := range s.counts {
			sum += c
		}
		if sum != s.total || s.offset < 0 || s.offset+len(s.counts) > numBuckets {
			t.Fatalf("%s read as %+v", b, s)
		}
		if len(s.counts) > 0 && (s.counts[0] == 0 || s.counts[len(s.counts)-1] == 0) {
			t.Fatalf("%s not trimmed: %+v", b, s)
		}
		again, _ := json.Marshal(s)
		var s2 Sketch
		if err := json.Unmarshal(again, &s2); err != nil || !reflect.DeepEqual(s, s2) && s.total != 0 {
			t.Fatalf("second trip of %s: %+v, %v", again, s2, err)
		}
		s.Quantile(0.99) // must not panic
	})
}
