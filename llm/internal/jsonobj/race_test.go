//go:build race

package jsonobj

// raceEnabled reports a -race build, where sync.Pool (encoding/json's
// scanners) drops items at random and allocation counts mean nothing.
const raceEnabled = true
