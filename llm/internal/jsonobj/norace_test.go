//go:build !race

package jsonobj

const raceEnabled = false
