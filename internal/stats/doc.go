// Package stats holds the pure statistics behind modelgate's rollout decisions:
// the Mann-Whitney U test and Hodges-Lehmann shift (as Kayenta's judge uses them),
// anytime-valid sequential tests for bad events labelled canary or stable, a
// confidence-sequence non-inferiority check for promotion, and a sequential
// sample-ratio-mismatch check.
//
// Every sequential test here is a test martingale: it may be looked at after every
// request, every second or every minute, and the probability that it ever rejects a
// true null hypothesis stays at most its alpha (Ville's inequality). The package does
// no I/O and reads no clock; callers feed it per-slice counts (see [Slice]).
// docs/analysis.md explains the methods in plain words and formulas.
package stats
