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
// no allocation (about 110 ns on the 2-core dev box; see "Time slices and
// memory" for when a second starts). Shadow copies are not
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
// A deployment keeps two tiers of time slices: 1-second slices for the
// last 600 seconds (the resolution the rollout analysis counts in, and
// the dashboard's last ten minutes) and 10-second slices, aligned to
// multiples of 10 s of unix time, for the whole hour. A window up to 10
// minutes reads 1-s slices only; a longer one reads 1-s slices for its
// recent part and 10-s slices before. (The tiers, and so every window's
// edges and every query's result, are those of the dense rings this
// replaced: TestMatchesDenseReference keeps those rings as a reference
// and compares every query on the same random traffic.)
//
// What changed with issue 22 is how the slices are stored. Before, each
// was a dense pair of 1159-bucket arrays, 9.3 KB, 960 of them allocated
// with the Recorder: 8.5 MiB a deployment, busy or not. Now a slice has
// two forms:
//
//   - live: the dense atomic arrays the writers add to, one add per
//     sketch as before, only for the seconds being written. Observe
//     attaches one to a second's slot when the second's first request
//     comes, from a small per-recorder pool of spares.
//   - packed: a sealed slice as varint runs of its non-zero buckets
//     (packed.go): a lone request costs a byte or two, a slice with every
//     bucket full about a byte a bucket.
//
// A background compactor seals a second's live slice once its recorder
// has seen a request of a second two later (the recorder's own clock, so
// that replays of past times behave as live traffic): it adds it to the
// second's packed 1-s slice and to its period's packed 10-s slice, clears
// it and gives it back to the pool. So steady traffic keeps two live
// slices and two spares (38 KiB), and Observe allocates nothing: it takes
// a spare when a second starts, and one comes back each second. The
// compactor is one goroutine for the process, started with a plain `go`
// (no allocation) when a writer queues a recorder and gone when none is
// queued, so an idle gateway runs nothing and tests leave nothing behind.
//
// The costs, measured (TestIdleAndActiveFootprint, bench/scale): a
// Recorder that never had a request is 400 bytes (its all-time counters);
// the first request allocates its ring (600 slots and 360 10-s slice
// headers, 39 KiB: the one allocation per deployment on the hot path,
// once). An hour of bench/memory's fill (16 requests a second spread over
// all 1159 buckets: the worst case for packing at that rate) retains
// about 250 KiB, against 8.5 MiB dense; narrower latency distributions
// and lighter traffic pack smaller; traffic so heavy and so spread that
// every bucket is non-zero in every second packs to 2.3-4.6 KB a slice,
// about 3 MiB for the hour: the bound, still about a third of the dense
// rings.
//
// Two exceptions to "Observe never allocates", both bounded: a writer into
// a second the compactor already sealed (a request finishing two seconds
// or more after the clock reading that picked its second) gets a new live
// slice for it, a spare if there is one (its counts are added to the
// packed ones when sealed again); and a recorder keeps at most 8 live
// slices: a writer opening a new second when all are taken (only a replay
// of past traffic faster than the compactor seals, as the benchmarks'
// fills do) yields until the compactor gives one back, rather than
// allocating a slice per second of garbage (after 100,000 yields it
// allocates, a safety valve). Writers never take a lock; readers and the
// compactor share a per-recorder mutex, which writers never wait for. The
// compactor detaches a live slice under its slot's guard, as a rotation
// does, so a writer of that (two seconds old) second may yield for the
// few instructions of a pointer swap.
//
// A deployment that goes idle keeps what it had: its ring, its last two
// seconds live and two spares (about 78 KiB), and its packed hour, which
// ages out of queries but is only freed when newer traffic reuses the
// ring positions or the deployment is removed. Sealing and freeing by the
// wall clock would need the compactor to run periodically; not done yet.
//
// Why the tiers stayed 600 1-s and 360 10-s slices: the rollout analysis
// resumes a run's Tails from its last slice, up to ten minutes back, and
// the dashboard's series reads the last ten minutes at 1 s; packed, that
// tier is a fifth of the hour's memory in bench/memory's fill. A coarser
// tier for the older part of the hour (60-s slices) would save nothing on
// that fill (its requests fall in different buckets every second, so six
// 10-s slices pack to about one 60-s slice) and up to five sixths of the
// 10-s tier on narrow real distributions, but it would move the documented
// edges of windows over ten minutes (up to 59 s instead of 9 s), which
// the admin API, the series and the tests rely on; the targets are met
// without it.
//
// Readers add up a slice's packed and live parts. The 10-s tier's reader
// also takes live slices a writer pushed out of their slot unsealed
// (below), and reads a period again when such a push happened meanwhile,
// so that nothing is counted twice or missed.
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
// Each 1-s slot is claimed by the second it holds (timeslot.Guard). A
// writer for a newer second takes the slot once no writer is inside it:
// the older second's 1-s slice is gone (it is 600 s old), and its live
// slice, if the compactor had not sealed it yet, goes on the recorder's
// sealed stack, from which the compactor (or a reader of the 10-s tier)
// folds it into its 10-s slice. A writer for an older second than the
// slot holds is dropped and counted late (it finished more than ten
// minutes "ago"; the dense rings still counted such a request in the
// 10-s ring, now it is in neither). A 10-s slice is gone once a newer
// period took its ring position, packed or still live. So every
// observation is counted exactly once in its own slices, and old data
// never leaks into a reused one. A reader discards a slot taken while
// being read: its data just aged out of the 1-s tier.
package telemetry
