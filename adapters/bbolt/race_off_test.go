//go:build !race

package bbolt_test

const leakSessions = 10_000
