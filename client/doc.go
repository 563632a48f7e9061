// Package client is the Go library that licensed processes (and triadctl)
// use to lease seats from a Triad cluster.
//
// A Client holds the licensing addresses of all three members and never
// needs to know which one leads: any member accepts any call. A member that
// cannot serve right now (UNAVAILABLE, no answer in time, ABORTED, an
// overload) makes the client try the next one; one that fails the call
// itself (INTERNAL, a protocol version it does not speak…) is skipped too,
// its error returned only if no other member does better. A definite answer
// (no seat, unknown feature, expired license…) is returned at once.
// Checkout is retried with one request id so that a retry after a timeout
// or a failover never takes a second seat. Leases are renewed by one
// background goroutine per Client with one batched Renew call per round,
// because the cluster commits every renewal through Raft.
//
// A Lease is Held while a server confirmed it recently enough (until the
// send time of its last renewal + TTL − a margin, on the monotonic clock);
// then Grace for the feature's grace period while no server answers; then
// Lost. A member answering again renews it transparently, with the same id.
// Changes are reported to the WithStateHandler function and on
// Lease.Changes; when the cluster refuses the renewals rather than not
// answering (an incompatible protocol version after a server upgrade), the
// refusal is in Lease.RenewErr and in the Grace and Lost changes. With
// WithBackup, a standalone backup server holds the leases while the cluster
// is unreachable (Lease.Source).
//
// Client.Borrow takes seats for offline use: the cluster keeps them until
// Borrowed.Until without any renewal, within the limit the license sets;
// Borrowed.Extend moves the end and Borrowed.Return gives the seats back.
// A borrow is never renewed by the Client and never taken from a backup
// server. See docs/client.md.
package client

// ProtocolVersion is the licensing protocol version this library speaks.
// A member that cannot serve it answers FAILED_PRECONDITION, which
// Checkout reports as a *ProtocolVersionError, and a running lease in
// Lease.RenewErr.
//
// 2: leases carry secrets, which renewals and releases send (servers of
// protocol 1 would not check them).
const ProtocolVersion uint32 = 2
