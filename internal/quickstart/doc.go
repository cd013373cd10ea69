// Package quickstart holds the test that runs docs/quickstart.md's commands
// as written (quickstart_test.go); it has no code of its own.
package quickstart
