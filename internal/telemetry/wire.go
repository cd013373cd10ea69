package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// sketchWire is a Sketch on the wire (the fleet's replicas exchange
// slices and summaries, docs/cluster.md): the bucket index of the first
// count and the counts of the buckets from there on. The layout is fixed,
// so a sketch read from any replica of the same modelgate merges by index.
type sketchWire struct {
	Offset int      `json:"offset"`
	Counts []uint64 `json:"counts"`
}

// MarshalJSON writes the sketch's non-empty range of buckets.
func (s Sketch) MarshalJSON() ([]byte, error) {
	if s.total == 0 {
		return []byte(`{"offset":0,"counts":[]}`), nil
	}
	return json.Marshal(sketchWire{Offset: s.offset, Counts: s.counts})
}

// ErrSketch is what a sketch that cannot be read is (errors.Is).
var ErrSketch = errors.New("telemetry: invalid sketch")

// UnmarshalJSON reads a sketch written by MarshalJSON. It refuses buckets
// outside the layout and a total that overflows; zero counts at either
// end are trimmed, so the result is what a Merge would have built.
func (s *Sketch) UnmarshalJSON(b []byte) error {
	var w sketchWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %w", ErrSketch, err)
	}
	if w.Offset < 0 || w.Offset > numBuckets || len(w.Counts) > numBuckets-w.Offset {
		return fmt.Errorf("%w: buckets %d..%d outside the layout's 0..%d", ErrSketch, w.Offset, w.Offset+len(w.Counts), numBuckets)
	}
	var total uint64
	for _, c := range w.Counts {
		if c > math.MaxUint64-total {
			return fmt.Errorf("%w: its counts overflow", ErrSketch)
		}
		total += c
	}
	lo, hi := 0, len(w.Counts)
	for lo < hi && w.Counts[lo] == 0 {
		lo++
	}
	for hi > lo && w.Counts[hi-1] == 0 {
		hi--
	}
	if total == 0 {
		*s = Sketch{}
		return nil
	}
	*s = Sketch{offset: w.Offset + lo, counts: w.Counts[lo:hi], total: total}
	return nil
}
