package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Modes as shown by `server show`.
const (
	ModeUnconfigured = "unconfigured"
	ModeStandalone   = "standalone"
	ModeFailover     = "failover"
)

// maxClockSkew is the largest clock difference tolerated between members.
const maxClockSkew = time.Hour

// cluster returns the formed cluster: the FSM's record, or the formation
// this member was bootstrapped with while the FSM has not recorded it yet.
func (s *Server) cluster() *fsmpb.FormCluster {
	if c := s.fsm.Cluster(); c != nil {
		return c
	}
	s.formMu.Lock()
	defer s.formMu.Unlock()
	return s.formation
}

func (s *Server) mode() string {
	if c := s.cluster(); c != nil {
		return c.GetMode()
	}
	return ModeUnconfigured
}

// setPeers points the heartbeats at the other members' failover ports and
// closes the failover port to everyone but the formed members.
func (s *Server) setPeers(c *fsmpb.FormCluster) {
	var peers []membership.Peer
	for _, m := range c.GetMembers() {
		if m.GetName() != s.cfg.Name {
			peers = append(peers, membership.Peer{Name: m.GetName(), Addr: m.GetRaftAddress()})
		}
	}
	if c != nil {
		s.side.SetMembers(memberNames(c))
	}
	s.mon.SetPeers(peers)
}

func memberNames(c *fsmpb.FormCluster) []string {
	var out []string
	for _, m := range c.GetMembers() {
		out = append(out, m.GetName())
	}
	return out
}

// Discover is this member's session-less self-description (admin.Backend).
func (s *Server) Discover(ctx context.Context) *triadv1.DiscoverResponse {
	return &triadv1.DiscoverResponse{Name: s.cfg.Name, Version: Version, Mode: s.mode(),
		FailoverAddress: s.advertisedRaft(string(s.node.transport.LocalAddr())), Tls: !s.cfg.Insecure}
}

// discover asks the member at a licensing address for its failover
// address, verifying the licensing port's certificate against the cluster
// CA when TLS is on.
func (s *Server) discover(ctx context.Context, addr string) (*triadv1.DiscoverResponse, error) {
	creds := insecure.NewCredentials()
	if s.public != nil {
		creds = credentials.NewTLS(s.public.MutualClient(nil))
	}
	d := peerDialer(&s.cfg)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	d2, err := triadv1.NewAdminClient(conn).Discover(ctx, &triadv1.DiscoverRequest{})
	if err != nil {
		return nil, err
	}
	fa := d2.GetFailoverAddress()
	if strings.HasPrefix(fa, ":") {
		host, _, _ := net.SplitHostPort(addr)
		fa = net.JoinHostPort(host, fa[1:])
	}
	d2.FailoverAddress = fa
	return d2, nil
}

// memberAddr returns the licensing address of the formed member named
// name ("" when unknown): from the replicated record without copying it
// (every checkout answer names the leader), else from this member's
// formation record.
func (s *Server) memberAddr(name string) string {
	if addr, ok := s.fsm.MemberGRPCAddress(name); ok {
		return addr
	}
	s.formMu.Lock()
	defer s.formMu.Unlock()
	for _, m := range s.formation.GetMembers() {
		if m.GetName() == name {
			return m.GetGrpcAddress()
		}
	}
	return ""
}

// info answers Peer.Info for formation checks.
func (s *Server) info() *peerpb.InfoResponse {
	adv := s.node.transport.LocalAddr()
	return &peerpb.InfoResponse{
		Name:                s.cfg.Name,
		ComputerId:          s.computerID,
		Version:             Version,
		PeerProtocolVersion: PeerProtocolVersion,
		Mode:                s.mode(),
		NowMs:               s.nowMs(),
		RaftAddress:         s.advertisedRaft(string(adv)),
		GrpcAddress:         s.Addr(),
		CommitIndex:         s.node.raft.CommitIndex(),
		IsLeader:            s.isLeader(),
		TrustedKeys:         configKeys(s.trusted),
		FormatVersion:       s.fsm.MaxFormat(),
		MachineProof:        s.machineProof,
	}
}

func (s *Server) advertisedRaft(resolved string) string {
	if s.cfg.RaftAdvertise != "" {
		return resolved
	}
	host, _, _ := net.SplitHostPort(s.cfg.RaftListen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		_, port, _ := net.SplitHostPort(resolved)
		return ":" + port // the forming member fills in the host
	}
	return resolved
}

// FormCluster forms the cluster from the member contacted (admin.Backend).
func (s *Server) FormCluster(ctx context.Context, members []string, standalone bool) (*triadv1.ClusterCreateResponse, error) {
	mode := ModeFailover
	if standalone {
		mode = ModeStandalone
		if len(members) == 0 {
			members = []string{s.Addr()}
		}
		if len(members) != 1 {
			return nil, status.Errorf(codes.InvalidArgument, "a standalone cluster has exactly one member; got %d (%s): drop --members or name only this member", len(members), strings.Join(members, ", "))
		}
	} else if len(members) != 3 {
		return nil, status.Errorf(codes.InvalidArgument, "a failover cluster has exactly three members; got %d (%s): pass --members A,B,C with the three licensing addresses, or --standalone for a single member", len(members), strings.Join(members, ", "))
	}
	seen := map[string]bool{}
	for _, m := range members {
		if _, _, err := net.SplitHostPort(m); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "member address %q is not HOST:PORT", m)
		}
		if seen[m] {
			return nil, status.Errorf(codes.InvalidArgument, "member %s is listed twice: a failover cluster needs three different members", m)
		}
		seen[m] = true
	}
	if m := s.mode(); m != ModeUnconfigured {
		return nil, status.Errorf(codes.FailedPrecondition, "this member already belongs to a %s cluster: a cluster is formed once and its members cannot change (to replace a dead member's machine, run `triadctl cluster replace-member OLD --with HOST:PORT --license NEW.lic` against a member of that cluster)", m)
	}

	infos := make([]*peerpb.InfoResponse, len(members))
	failoverAddrs := make([]string, len(members))
	// offsets[i] is member i's clock minus this member's, estimated at the
	// middle of the Info call, so that every pair can be compared.
	offsets := make([]time.Duration, len(members))
	for i, addr := range members {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		d, err := s.discover(cctx, addr)
		cancel()
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "member %s is unreachable (%v): start triadd there and check the address, the firewall and that its certificate is signed by this cluster's CA, then retry", addr, status.Convert(err).Message())
		}
		if d.GetTls() == s.cfg.Insecure {
			return nil, status.Errorf(codes.FailedPrecondition, "member %s (%s) runs %s but this member runs %s: all three members run with TLS (or all with --insecure)", addr, d.GetName(), tlsWord(d.GetTls()), tlsWord(!s.cfg.Insecure))
		}
		if d.GetMode() != ModeUnconfigured {
			return nil, status.Errorf(codes.FailedPrecondition, "member %s (%s) already belongs to a %s cluster: only unconfigured members can form a cluster", addr, d.GetName(), d.GetMode())
		}
		failoverAddrs[i] = d.GetFailoverAddress()
		cctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		sent := s.now()
		info, err := s.peerClient(failoverAddrs[i]).Info(cctx, &peerpb.InfoRequest{})
		received := s.now()
		cancel()
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "member %s answers on its licensing port but not on its failover port %s (%v): open the failover port between the members and check that each member's certificate is a member certificate of this cluster's CA", addr, failoverAddrs[i], status.Convert(err).Message())
		}
		infos[i] = info
		mid := sent.Add(received.Sub(sent) / 2)
		offsets[i] = time.UnixMilli(info.GetNowMs()).Sub(mid)
	}
	// The vendor keys every member trusts become the cluster's, replicated:
	// they must agree, or members would judge licenses differently.
	fc := &fsmpb.FormCluster{Mode: mode, VendorTrust: &fsmpb.VendorTrust{Keys: configKeys(s.trusted)}}
	self := false
	names, ids := map[string]string{}, map[string]string{}
	for i, info := range infos {
		addr := members[i]
		switch {
		case info.GetPeerProtocolVersion() != PeerProtocolVersion:
			return nil, status.Errorf(codes.FailedPrecondition, "member %s runs an incompatible version (%s, peer protocol %d; this member: %s, protocol %d): run the same Triad version on all members", addr, info.GetVersion(), info.GetPeerProtocolVersion(), Version, PeerProtocolVersion)
		case info.GetMode() != ModeUnconfigured:
			return nil, status.Errorf(codes.FailedPrecondition, "member %s (%s) already belongs to a %s cluster: only unconfigured members can form a cluster", addr, info.GetName(), info.GetMode())
		case info.GetFormatVersion() != s.fsm.MaxFormat():
			return nil, status.Errorf(codes.FailedPrecondition, "member %s (%s) runs version %s (command format %d) but this member runs %s (format %d): form the cluster with the same Triad version on all members (upgrades come later, one member at a time: docs/upgrading.md)", addr, info.GetName(), info.GetVersion(), info.GetFormatVersion(), Version, s.fsm.MaxFormat())
		}
		if !sameKeys(info.GetTrustedKeys(), fc.VendorTrust.Keys) {
			return nil, s.trustMismatch(addr, info.GetName(), info.GetTrustedKeys())
		}
		if other, dup := names[info.GetName()]; dup {
			return nil, status.Errorf(codes.FailedPrecondition, "members %s and %s have the same name %q: give each member its own --name", other, addr, info.GetName())
		}
		if other, dup := ids[info.GetComputerId()]; dup {
			return nil, status.Errorf(codes.FailedPrecondition, "members %s and %s have the same computer ID %s: they share a data directory or a copied one; give each member its own", other, addr, info.GetComputerId())
		}
		names[info.GetName()], ids[info.GetComputerId()] = addr, addr
		self = self || info.GetComputerId() == s.computerID
		raftAddr := info.GetRaftAddress()
		if strings.HasPrefix(raftAddr, ":") {
			raftAddr = failoverAddrs[i]
		}
		fc.Members = append(fc.Members, &fsmpb.Member{Name: info.GetName(), GrpcAddress: addr, RaftAddress: raftAddr, ComputerId: info.GetComputerId()})
	}
	if err := checkClockPairs(members, infos, offsets); err != nil {
		return nil, err
	}
	if !self {
		return nil, status.Errorf(codes.InvalidArgument, "the member contacted (%s) is not in --members %s: name it with the address the others reach it at", s.Addr(), strings.Join(members, ","))
	}
	sort.Slice(fc.Members, func(i, j int) bool { return fc.Members[i].GetName() < fc.Members[j].GetName() })

	// Bootstrap every member with the same configuration. Two bootstrapped
	// members already elect a leader; a third that missed it learns the
	// configuration from the leader's log.
	var failed []string
	for _, m := range fc.GetMembers() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.peerClient(m.GetRaftAddress()).Bootstrap(cctx, &peerpb.BootstrapRequest{PeerProtocolVersion: PeerProtocolVersion, Cluster: fc})
		cancel()
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %s", m.GetName(), status.Convert(err).Message()))
		}
	}
	if len(failed) == len(fc.GetMembers()) || (mode == ModeFailover && len(failed) > 1) {
		return nil, status.Errorf(codes.Internal, "cluster formation failed: %s", strings.Join(failed, "; "))
	}
	// Wait until a leader has recorded the formation in the replicated state.
	deadline := time.Now().Add(15 * time.Second)
	for s.fsm.Cluster() == nil {
		if time.Now().After(deadline) {
			return nil, status.Errorf(codes.DeadlineExceeded, "members were bootstrapped but no leader recorded the formation within 15 s: check `cluster status` and the member logs")
		}
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(failed) > 0 {
		s.log.Warn("a member missed the bootstrap; it will learn the configuration from the leader", "failed", failed)
	}
	leader, _ := s.leaderAddr()
	resp := &triadv1.ClusterCreateResponse{Mode: mode, Leader: leader}
	for _, m := range fc.GetMembers() {
		resp.Members = append(resp.Members, &triadv1.Member{Name: m.GetName(), Address: m.GetGrpcAddress(), ComputerId: m.GetComputerId(), RaftAddress: m.GetRaftAddress()})
	}
	return resp, nil
}

var errAlreadyFormed = errors.New("this member is already part of a cluster")

// bootstrap makes this unconfigured member a voter of fc (Peer.Bootstrap).
func (s *Server) bootstrap(fc *fsmpb.FormCluster) error {
	if err := s.checkBootstrapTrust(fc); err != nil {
		return err
	}
	s.formMu.Lock()
	defer s.formMu.Unlock()
	var me *fsmpb.Member
	cfg := raft.Configuration{}
	for _, m := range fc.GetMembers() {
		if m.GetComputerId() == s.computerID {
			me = m
		}
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.GetName()), Address: raft.ServerAddress(m.GetRaftAddress())})
	}
	has, err := raft.HasExistingState(s.node.logs, s.node.store, s.node.snaps)
	if err != nil {
		return err
	}
	if has || s.formation != nil || s.fsm.Cluster() != nil {
		// A member bootstrapped a moment earlier may already have elected
		// a leader (with this member's vote) and replicated the same
		// configuration here: that is this very formation, not a second one.
		// (If the vote came before the leader's first entries, this is
		// refused; adoptFormation then takes the formation from the log.)
		if me != nil && s.formation == nil && s.sameConfiguration(cfg) {
			if err := membership.SaveFormation(s.cfg.DataDir, fc); err != nil {
				return err
			}
			s.formation = fc
			s.setPeers(fc)
			return nil
		}
		if me != nil && s.formation != nil && proto.Equal(s.formation, fc) {
			return nil // a retried bootstrap
		}
		return errAlreadyFormed
	}
	if me == nil || me.GetName() != s.cfg.Name {
		return fmt.Errorf("this member (%s, computer ID %s) is not in the cluster being formed", s.cfg.Name, s.computerID)
	}
	if err := membership.SaveFormation(s.cfg.DataDir, fc); err != nil {
		return err
	}
	if err := s.node.raft.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("bootstrap raft: %w", err)
	}
	s.formation = fc
	s.setPeers(fc)
	s.log.Info("cluster formed", "mode", fc.GetMode(), "members", len(fc.GetMembers()))
	return nil
}

// adoptFormation: a member that missed its bootstrap call (it timed out, or
// came after the other two had elected a leader) learns the formation from
// the replicated state; it records it on disk and starts its heartbeats,
// as if it had been bootstrapped. Called every second.
//
// It also follows a replacement of a member (`cluster replace-member`):
// when the replicated record's members differ from the formation record,
// the new members are saved and the heartbeats and the failover port
// follow them.
func (s *Server) adoptFormation() {
	s.formMu.Lock()
	defer s.formMu.Unlock()
	fc := s.fsm.Cluster()
	if fc == nil || (s.formation != nil && sameMembers(s.formation, fc)) {
		return
	}
	changed := s.formation != nil
	if changed {
		fc.VendorTrust = s.formation.GetVendorTrust()
	}
	if err := membership.SaveFormation(s.cfg.DataDir, fc); err != nil {
		s.log.Error("cannot record the cluster formation learned from the leader; retrying", "error", err)
		return
	}
	s.formation = fc
	s.setPeers(fc)
	for _, m := range fc.GetMembers() {
		if m.GetName() == s.cfg.Name && m.GetComputerId() != s.computerID {
			s.log.Error("this member's computer ID differs from the one the cluster bound to it: its data directory was lost or replaced; restore it from a backup (triadd restore) or replace the member (triadctl cluster replace-member)",
				"computer_id", s.computerID, "bound_computer_id", m.GetComputerId())
		}
	}
	if changed {
		s.log.Info("cluster members changed (a member was replaced)", "members", strings.Join(memberNames(fc), ","))
		return
	}
	s.log.Info("cluster formation learned from the leader", "mode", fc.GetMode(), "members", len(fc.GetMembers()))
}

// ClusterStatus reports the cluster as this member sees it (admin.Backend).
func (s *Server) ClusterStatus(ctx context.Context) *triadv1.ClusterStatusResponse {
	_, leaderName := s.leaderAddr()
	links := s.mon.Links()
	urls := s.mon.PeerHTTPURLs()
	resp := &triadv1.ClusterStatusResponse{
		Mode:         s.mode(),
		Leader:       leaderName,
		Member:       s.cfg.Name,
		Term:         s.term(),
		CommitIndex:  s.node.raft.CommitIndex(),
		AppliedIndex: s.node.raft.AppliedIndex(),
	}
	s.addHealth(ctx, resp)
	if resp.Mode == ModeUnconfigured {
		resp.Status = membership.StatusNotOperational
		return resp
	}
	resp.Status = membership.StatusWithLeader(links, leaderName)
	for _, l := range links {
		tl := &triadv1.Link{A: l.A, B: l.B, State: l.State}
		if !l.DownSince.IsZero() {
			tl.DownSinceUnixMs = l.DownSince.UnixMilli()
		}
		resp.Links = append(resp.Links, tl)
	}
	for _, m := range s.cluster().GetMembers() {
		role := "follower"
		switch {
		case m.GetName() == leaderName:
			role = "leader"
		case m.GetName() == s.cfg.Name:
			role = roleName(s.node.raft.State().String())
		default:
			switch s.mon.PeerState(m.GetName()) {
			case membership.LinkDown:
				role = "unreachable"
			case membership.LinkUnknown:
				role = "unknown"
			}
		}
		url := urls[m.GetName()]
		if m.GetName() == s.cfg.Name {
			url = s.mon.HTTPURL()
		}
		mem := &triadv1.Member{Name: m.GetName(), Address: m.GetGrpcAddress(), ComputerId: m.GetComputerId(), Role: role, RaftAddress: m.GetRaftAddress(),
			HttpUrl: completeHTTPURL(url, m.GetGrpcAddress())}
		if m.GetName() == s.cfg.Name {
			mem.Version, mem.FormatVersion = Version, s.fsm.MaxFormat()
		} else if b, ok := s.mon.PeerBuild(m.GetName()); ok {
			mem.Version, mem.FormatVersion = b.Version, b.Format
		}
		resp.Members = append(resp.Members, mem)
	}
	return resp
}

func (s *Server) term() uint64 {
	var t uint64
	fmt.Sscan(s.node.raft.Stats()["term"], &t)
	return t
}

// roleName is a Raft state as shown to operators.
func roleName(state string) string { return strings.ToLower(state) }

// sameConfiguration reports whether Raft's current configuration has
// exactly the voters of cfg.
func (s *Server) sameConfiguration(cfg raft.Configuration) bool {
	f := s.node.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	have := f.Configuration().Servers
	if len(have) != len(cfg.Servers) {
		return false
	}
	key := func(v raft.Server) string { return string(v.ID) + "@" + string(v.Address) }
	want := map[string]bool{}
	for _, v := range cfg.Servers {
		want[key(v)] = true
	}
	for _, v := range have {
		if !want[key(v)] {
			return false
		}
	}
	return true
}

func tlsWord(on bool) string {
	if on {
		return "with TLS"
	}
	return "without TLS (--insecure)"
}

// checkClockPairs compares the clocks of every pair of members, not only
// each with the contacted one: two members 2 h apart are each within 1 h of
// a third in the middle, and would still disagree on every lease's expiry
// after a failover.
func checkClockPairs(members []string, infos []*peerpb.InfoResponse, offsets []time.Duration) error {
	for i := range offsets {
		for j := i + 1; j < len(offsets); j++ {
			if skew := offsets[j] - offsets[i]; skew > maxClockSkew || skew < -maxClockSkew {
				return status.Errorf(codes.FailedPrecondition, "the clock of member %s (%s) differs from that of member %s (%s) by %s (at most %s allowed): synchronise the clocks (NTP) and retry",
					members[j], infos[j].GetName(), members[i], infos[i].GetName(), skew.Round(time.Second), maxClockSkew)
			}
		}
	}
	return nil
}
