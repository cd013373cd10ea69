// Package telemetry measures every live request per deployment: all-time
// counters for Prometheus, and an hour of time slices from which any window
// (10s..1h) is a merge, for the metrics report and the rollout analysis.
//
// # Recording
//
// The proxy holds one *Recorder per deployment (Registry.Recorder, resolved
// when it compiles its routing table) and calls Begin and Observe around
// every live request. Observe does about fifteen atomic adds and two bucket
// lookups (a table and one integer comparison): no locks in the common case,
// no allocation (about 110 ns on the 2-core dev box). Shadow copies are not
// recorded here.
//
// # Latency sketches
//
// Latency and TTFB go into 1159 fixed log buckets from 1µs to 1h (values
// outside are clamped), each at most 1.9% wide with a representative value
// within 0.95% of every value in it, so quantiles are within 1% of the exact
// nearest-rank ones. One fixed layout makes every sketch mergeable by adding
// counts. DataDog's sketches-go was measured against it (BenchmarkSketchRecord):
// its Add is ~9x slower and not safe for concurrent use, so it would need a
// lock per request; the fixed atomic buckets win on the hot path.
//
// # Time slices and memory
//
// A Recorder keeps two rings, written at once by Observe: 600 1-second
// slices (the last 10 minutes, the resolution the analysis counts in) and
// 360 10-second slices (the whole hour). A window up to 10 minutes reads
// 1-s slices only; a longer one reads 1-s slices for its recent part and
// 10-s slices before. Each slice holds dense uint32 bucket arrays for
// latency and TTFB plus status-class counters: about 9.3 KB, so a
// deployment's hour is 8.5 MiB, allocated once when the Recorder is
// created and never grown. Dense arrays cost memory but keep recording to
// one atomic add per sketch with no sealing or compaction step (which would
// need a background goroutine or allocation on the hot path); double
// recording into the coarse ring costs five atomic adds and spares a
// roll-up step that would race with late writers. Queries compact what
// they return into sparse Sketches.
//
// # Pinned requests
//
// Requests routed by the X-Model-Deployment override are counted in the
// slices' status classes (Summary.OverrideRequests) and in the all-time
// Prometheus counters and histograms, but not in the slices' latency and
// TTFB buckets: any client can pin a request, and the windows are what the
// rollout gates judge.
//
// # Rotation
//
// Each slot is claimed by the epoch (second, or 10-s period) it holds. A
// writer for a newer epoch resets the slot once no writer is inside it; a
// writer for an older epoch than the slot holds is dropped (it would have
// finished more than the ring's lifetime ago). So every observation is
// counted exactly once in its own slice, and old data never leaks into a
// reused slot. A reader discards a slot reset while being read: its data
// just aged out.
package telemetry
