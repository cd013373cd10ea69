// Package fleet is what the gateways of a fleet (cluster mode, several
// gateways sharing one state in etcd) ask of each other over their admin
// APIs: the evidence the rollout leader gathers from every replica, and
// the client they call each other with.
//
// # Evidence: pulled by the leader
//
// The leader's rollout controller judges a canary on the requests every
// replica served, not on its own share. Each replica already measures
// every request it serves (package telemetry); the leader pulls, every
// Interval (250 ms by default), one POST /api/v1/fleet/evidence per
// replica naming every rollout it follows. The replica answers with the
// parts of seconds its two deployments served since the last answer the
// leader took (a telemetry.Tail per rollout, kept on the replica), and the
// shadow counts of the stage. Pulling was chosen over pushing through
// etcd: the evidence is only ever read by the leader, is worthless a few
// seconds later, and is ~1 KB per replica per pull, which would be ~4 KB
// a second of etcd revisions per replica for nothing anyone keeps
// (docs/cluster.md has the measurements).
//
// # Combining what replicas served
//
// A replica's part of a second is observed by the analysis as its own
// slice, never added to another replica's: the sequential tests condition
// each bad event on the realised canary share of the slice it came from,
// and a slice must be one draw of one split (docs/analysis.md). The leader
// hands the analysis the parts in order of their second: a second is
// released once every replica still reporting has sent what it served up
// to it. A replica that has not answered for Grace is left out (its late
// parts of released seconds are dropped, never taken as zero traffic) and
// the verdicts say "evidence from N of M replicas".
package fleet
