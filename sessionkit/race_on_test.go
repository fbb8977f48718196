//go:build race

package sessionkit_test

// raceEnabled: the race detector moves some values to the heap, so the
// allocation counts pinned by the tests hold only without it (.ci/run runs
// those tests a second time without -race).
const raceEnabled = true
