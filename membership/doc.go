// Package membership owns the three-member topology seen from one member:
// its stable computer ID, the 1-second peer heartbeat with 5-second failure
// detection, the link matrix (A–B, A–C, B–C) and the cluster status word.
//
// It does no Raft work: Raft decides who leads, membership tells operators
// which member and which link is down. Any member can report all three links
// because every ping carries the sender's view of its own links.
package membership
