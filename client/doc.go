// Package client is the Go library that licensed processes (and triadctl)
// use to lease seats from a Triad cluster.
//
// A Client holds the licensing addresses of all three members and never
// needs to know which one leads: any member accepts any call, and a member
// that cannot serve answers UNAVAILABLE (or does not answer in time), which
// makes the client try the next one. Checkout is retried with one request
// id so that a retry after a timeout or a failover never takes a second
// seat. Leases are renewed by one background goroutine per Client with one
// batched Renew call per round, because the cluster commits every renewal
// through Raft.
//
// A Lease is Held while a server confirmed it recently enough (until the
// send time of its last renewal + TTL − a margin, on the monotonic clock);
// then Grace for the feature's grace period while no server answers; then
// Lost. A member answering again renews it transparently, with the same id.
// Changes are reported to the WithStateHandler function and on
// Lease.Changes. With WithBackup, a standalone backup server holds the
// leases while the cluster is unreachable (Lease.Source).
//
// Borrowing (offline use) arrives with the license-model issue; see
// docs/client.md.
package client

// ProtocolVersion is the licensing protocol version this library speaks.
// A member that cannot serve it answers FAILED_PRECONDITION, which
// Checkout reports as a *ProtocolVersionError.
const ProtocolVersion uint32 = 1
