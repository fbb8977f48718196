//go:build !race

package otelstore_test

const raceEnabled = false
