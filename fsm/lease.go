package fsm

import (
	"github.com/triadlm/triad/proto/fsmpb"
)

// lease is a live lease as the state keeps it: the fields of fsmpb.Lease
// (same names, same meaning), without the protobuf message's bookkeeping,
// with its place in the expiry heap, and with its strings interned (see
// interner). The wire and snapshot form stays fsmpb.Lease: toProto and
// leaseFromProto convert at the edges (answers, reads, snapshots).
//
// Held leases are most of a member's memory at scale (docs/performance.md:
// 100,000 leases); this form is 240 bytes against 352 for the message,
// and the interned feature, user, host and client strings are shared.
type lease struct {
	Id           uint64
	GrantedIndex uint64
	Pid          int64
	GrantedMs    int64
	RenewedMs    int64
	ExpiresMs    int64
	TtlMs        int64
	AccountedMs  int64
	LingerMs     int64
	IdleSinceMs  int64
	RequestId    string
	Feature      string
	VersionText  string
	Package      string
	User         string
	Host         string
	ClientId     string
	ViaMember    string
	// Secret is the grant's secret (fsmpb.Lease.secret), held as a string:
	// 8 bytes less than a slice, which with heapIdx as an int32 makes the
	// struct 240 bytes, an allocation class below 256.
	Secret    string
	Version   uint32
	Count     uint32
	heapIdx   int32
	Borrowed  bool
	NamedUser bool
	Lingering bool
}

// toProto returns the lease as a new message (secret included).
func (l *lease) toProto() *fsmpb.Lease {
	return &fsmpb.Lease{
		Id:           l.Id,
		RequestId:    l.RequestId,
		Feature:      l.Feature,
		Version:      l.Version,
		Count:        l.Count,
		User:         l.User,
		Host:         l.Host,
		Pid:          l.Pid,
		ClientId:     l.ClientId,
		GrantedMs:    l.GrantedMs,
		RenewedMs:    l.RenewedMs,
		ExpiresMs:    l.ExpiresMs,
		TtlMs:        l.TtlMs,
		GrantedIndex: l.GrantedIndex,
		ViaMember:    l.ViaMember,
		Borrowed:     l.Borrowed,
		AccountedMs:  l.AccountedMs,
		NamedUser:    l.NamedUser,
		Secret:       []byte(l.Secret),
		VersionText:  l.VersionText,
		Package:      l.Package,
		Lingering:    l.Lingering,
		LingerMs:     l.LingerMs,
		IdleSinceMs:  l.IdleSinceMs,
	}
}

// answerLease is the copy of l an answer carries: none while the state
// applies an entry whose answers nobody reads (state.quiet).
func (s *state) answerLease(l *lease) *fsmpb.Lease {
	if s.quiet {
		return nil
	}
	return l.toProto()
}

// leaseFromProto is the state's form of m (from a snapshot), its strings
// interned in in.
func leaseFromProto(m *fsmpb.Lease, in *interner) *lease {
	l := &lease{
		Id:           m.GetId(),
		RequestId:    m.GetRequestId(),
		Feature:      in.get(m.GetFeature()),
		Version:      m.GetVersion(),
		Count:        m.GetCount(),
		User:         in.get(m.GetUser()),
		Host:         in.get(m.GetHost()),
		Pid:          m.GetPid(),
		ClientId:     in.get(m.GetClientId()),
		GrantedMs:    m.GetGrantedMs(),
		RenewedMs:    m.GetRenewedMs(),
		ExpiresMs:    m.GetExpiresMs(),
		TtlMs:        m.GetTtlMs(),
		GrantedIndex: m.GetGrantedIndex(),
		ViaMember:    in.get(m.GetViaMember()),
		Borrowed:     m.GetBorrowed(),
		AccountedMs:  m.GetAccountedMs(),
		NamedUser:    m.GetNamedUser(),
		VersionText:  in.get(m.GetVersionText()),
		Package:      in.get(m.GetPackage()),
		Lingering:    m.GetLingering(),
		LingerMs:     m.GetLingerMs(),
		IdleSinceMs:  m.GetIdleSinceMs(),
	}
	if len(m.GetSecret()) > 0 {
		l.Secret = string(m.Secret)
	}
	return l
}

// interner shares one copy of each string that many leases repeat
// (feature, user, host, client id, member, package): a decoded command
// brings its own copy of each, which would otherwise stay with the lease.
// Interning changes no value, only where the bytes live, so it is
// invisible to the state machine's results and to determinism.
type interner struct {
	m map[string]string
}

// internFloor is the table size below which it is never reset.
const internFloor = 4096

// get returns the shared copy of s, adding s to the table when it has none.
func (in *interner) get(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in.m[s]; ok {
		return v
	}
	if in.m == nil {
		in.m = make(map[string]string)
	}
	in.m[s] = s
	return s
}

// trim empties the table when it holds more than limit strings (at least
// internFloor): more than live leases could use, so strings of ended leases
// do not pile up, at the cost of a second copy for strings still in use.
func (in *interner) trim(limit int) {
	if len(in.m) > max(limit, internFloor) {
		clear(in.m)
	}
}

// requestRecord is the state's form of fsmpb.RequestRecord: the request
// and client ids are the key it is stored under (requestKey), and a
// refusal's message is kept beside the records (state.denied): every
// held lease has a record, few records are refusals, and without the
// string the map's slots are 16 bytes smaller (docs/performance.md,
// "Session 9").
type requestRecord struct {
	LeaseId     uint64
	EndedMs     int64
	DeniedCode  fsmpb.Code
	IdleTimeout bool
}

func (r requestRecord) toProto(k requestKey, deniedMessage string) *fsmpb.RequestRecord {
	return &fsmpb.RequestRecord{RequestId: k.request, ClientId: k.client, LeaseId: r.LeaseId, EndedMs: r.EndedMs,
		DeniedCode: r.DeniedCode, DeniedMessage: deniedMessage, IdleTimeout: r.IdleTimeout}
}
