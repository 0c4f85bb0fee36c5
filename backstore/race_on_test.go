//go:build race

package backstore

// raceEnabled: the race detector makes sync.Pool drop Puts at random, so
// allocation counts are meaningless under it.
const raceEnabled = true
