// Package admin holds the Admin gRPC service (on top of a Backend that
// package server implements) and the triadctl command tree.
package admin
