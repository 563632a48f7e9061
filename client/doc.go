// Package client is the Go library that licensed processes (and triadctl)
// use to lease seats from a Triad cluster.
//
// A Client holds the licensing addresses of all three members and never
// needs to know which one leads: any member accepts any call, and a member
// that cannot serve answers UNAVAILABLE, which makes the client try the next
// one. Checkout is retried with one request id so that a retry after a
// timeout or a failover never takes a second seat. Held leases are renewed
// by one background goroutine per Client with one batched Renew call per
// round, because the cluster commits every renewal through Raft and a call
// per lease would multiply that cost by the number of leases.
package client

// ProtocolVersion is the licensing protocol version this library speaks.
// A member that cannot serve it answers FAILED_PRECONDITION, which
// Checkout reports as a *ProtocolVersionError.
const ProtocolVersion uint32 = 1
