//go:build race

package bbolt_test

// leakSessions is smaller under the race detector, which slows bbolt tenfold.
const leakSessions = 1_000
