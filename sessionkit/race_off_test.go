//go:build !race

package sessionkit_test

const raceEnabled = false
