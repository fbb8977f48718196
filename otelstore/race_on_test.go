//go:build race

package otelstore_test

// raceEnabled: the race detector moves some values to the heap, so the
// allocation counts checked by the tests hold only without it.
const raceEnabled = true
