// Package fill writes a deployment's past hour of telemetry the way the
// benchmarks measure memory with it (bench/memory, bench/scale): through
// the Recorder's own Begin and Observe, the very calls the data plane
// makes.
package fill

import (
	"math"
	"time"

	"github.com/modelgate/modelgate/internal/telemetry"
)

// Hour writes perSecond observations into every second of the hour ending
// with the second last (unix seconds), oldest first. Latencies are spread
// evenly over log(minLat)..log(maxLat), shifted every second by the golden
// ratio; 1µs..1h spans every sketch bucket, the worst case for the memory
// the slices hold. TTFB is a third of the latency.
func Hour(rc *telemetry.Recorder, last int64, perSecond int, minLat, maxLat time.Duration) {
	const hour = 3600
	for s := last - hour + 1; s <= last; s++ {
		phase := math.Mod(float64(s)*0.618034, 1)
		for j := range perSecond {
			f := (float64(j) + phase) / float64(perSecond)
			lat := time.Duration(float64(minLat) * math.Pow(float64(maxLat)/float64(minLat), f))
			rc.Begin()
			rc.Observe(telemetry.Observation{
				Now:     s*int64(time.Second) + int64(j)*int64(time.Second)/int64(perSecond),
				Status:  200,
				Latency: lat,
				TTFB:    lat / 3,
			})
		}
	}
}
