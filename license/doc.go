// Package license defines Triad's signed license files: the body a vendor
// signs, the text file that carries it, the vendor key files, and the checks
// a member runs before it counts a license (signature, dates, binding).
//
// The package is pure on purpose: callers pass bytes, keys and the current
// time, and get values or errors back. It never reads files, the network or
// the clock, so the replicated state machine can call it with the time the
// leader stamped into a command and every member reaches the same answer.
//
// Every refusal is one of the sentinel errors below (check with errors.Is),
// with a message that says what is wrong and what to do about it.
package license
