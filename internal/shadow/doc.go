// Package shadow sends copies of live requests to shadow deployments,
// compares their answers with the live ones, and keeps the statistics:
// a bounded queue and workers per shadow deployment (a full queue drops
// the copy and counts it; it never slows the live request), per-second
// counters for windows, and a bounded sample of mismatches.
package shadow
