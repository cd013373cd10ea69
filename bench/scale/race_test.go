//go:build race

package main

// raceEnabled: the race detector makes every page the gateway writes cost
// its shadow memory too, so RSS is not a Recorder's.
const raceEnabled = true
