//go:build race

package main

// raceEnabled: the race detector makes every page the gateway writes cost
// its shadow memory too, so the RSS per deployment is not telemetry's.
const raceEnabled = true
