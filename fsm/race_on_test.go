//go:build race

package fsm

// raceEnabled scales the randomized test down under the race detector,
// which makes protobuf work about ten times slower.
const raceEnabled = true
