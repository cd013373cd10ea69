package api

// TokenKindHeader, on every authenticated answer, names the kind of token
// the call presented ("admin" or "read-only"): the dashboard and the CLI
// say which one they hold.
const TokenKindHeader = "X-Modelgate-Token"

// DegradedHeader, on every authenticated answer while the gateway serves
// degraded (cluster mode: its state store does not answer), says why: the
// dashboard shows it.
const DegradedHeader = "X-Modelgate-Degraded"

// LeaderHeader, on a 503 answer to a rollout start or action sent to a
// gateway that does not lead the fleet's rollouts, is the leader's admin
// URL.
const LeaderHeader = "X-Modelgate-Leader"

// ReplicasHeader, on every metrics, series and shadow answer, says how
// many of the fleet's replicas the answer holds: "2/3".
const ReplicasHeader = "X-Modelgate-Replicas"

// Headers of GET /api/v1/state/backup: what the copy holds.
const (
	HeaderRevision = "X-Modelgate-Revision"
	HeaderLastSeq  = "X-Modelgate-Last-Seq"
)
