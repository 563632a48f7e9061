package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Replacing a dead member's machine (docs/operator-guide.md, "Replacing a
// dead member"). The replicated cluster record is the truth: one
// ReplaceMember command swaps the member in it and the licenses bound to
// it, and the leader then makes the Raft voters follow the record
// (reconcileVoters: RemoveServer of the old, AddVoter of the new), again
// after any leader change. So a replace interrupted after the command
// committed is finished by whichever member leads, and re-running the same
// command finds it done and waits for the voters.

// ReplaceMember replaces the member named old by the unconfigured member
// at the licensing address with (admin.MemberReplacer).
func (s *Server) ReplaceMember(ctx context.Context, sessionID, old, with string, files [][]byte, force bool) (*triadv1.ClusterReplaceMemberResponse, error) {
	c := s.cluster()
	if c == nil {
		return nil, status.Error(codes.FailedPrecondition, "the cluster is not formed yet: form it with `triadctl cluster create`")
	}
	if c.GetMode() != ModeFailover {
		return nil, status.Errorf(codes.FailedPrecondition, "a %s cluster has no member to carry on while one is replaced: restore its backup on a machine with `triadd restore` instead", c.GetMode())
	}
	if _, _, err := net.SplitHostPort(with); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "--with %q is not HOST:PORT (the new member's licensing address)", with)
	}
	var names []string
	var oldM *fsmpb.Member
	for _, m := range c.GetMembers() {
		names = append(names, m.GetName())
		if m.GetName() == old {
			oldM = m
		}
	}

	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	d, err := s.discover(cctx, with)
	cancel()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "the new member %s is unreachable (%v): start triadd there with an empty data directory and a member certificate of this cluster's CA, and check the address and the firewall", with, status.Convert(err).Message())
	}
	if d.GetTls() == s.cfg.Insecure {
		return nil, status.Errorf(codes.FailedPrecondition, "the new member %s runs %s but this cluster runs %s", with, tlsWord(d.GetTls()), tlsWord(!s.cfg.Insecure))
	}
	info, err := s.candidateInfo(ctx, d.GetFailoverAddress())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "the new member %s answers on its licensing port but not on its failover port %s (%v): open the failover port between the members and give it a member certificate of this cluster's CA", with, d.GetFailoverAddress(), status.Convert(err).Message())
	}
	raftAddr := info.GetRaftAddress()
	if strings.HasPrefix(raftAddr, ":") {
		raftAddr = d.GetFailoverAddress()
	}
	nm := &fsmpb.Member{Name: info.GetName(), GrpcAddress: with, RaftAddress: raftAddr, ComputerId: info.GetComputerId()}

	// Done before (a re-run): OLD is gone from the record and the new
	// member is in it.
	done := false
	for _, m := range c.GetMembers() {
		done = done || (oldM == nil && proto.Equal(m, nm))
	}
	if !done {
		if oldM == nil {
			return nil, status.Errorf(codes.NotFound, "no member %q in this cluster (members: %s): name the dead member as `cluster status` shows it", old, strings.Join(names, ", "))
		}
		if err := s.checkReplacement(ctx, c, oldM, nm, d, info, force); err != nil {
			return nil, err
		}
	}

	// The licenses, checked here for clear answers; Apply checks again.
	var nextIDs []string
	for _, m := range c.GetMembers() {
		if m.GetName() != old && !proto.Equal(m, nm) {
			nextIDs = append(nextIDs, m.GetComputerId())
		}
	}
	nextIDs = append(nextIDs, nm.GetComputerId())
	sort.Strings(nextIDs)
	trusted, _ := s.fsm.VendorTrust()
	cmd := &fsmpb.ReplaceMember{SessionId: sessionID, OldName: old, Member: nm}
	if len(files) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no license given: pass --license NEW.lic, a license binding the new set of computer IDs "+strings.Join(nextIDs, ", "))
	}
	for i, file := range files {
		f, err := license.Parse(file)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "license file %d: %v", i+1, err)
		}
		if err := f.Verify(trusted); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "%v", err)
		}
		if err := license.CheckBinding(&f.Body, ModeFailover, nextIDs); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "license %s does not bind the cluster after the replacement (computer IDs %s): %v; ask the vendor for a license binding the new set",
				f.Body.Serial, strings.Join(nextIDs, ", "), err)
		}
		cmd.Licenses = append(cmd.Licenses, fsm.LicenseFromFile(f, file))
	}

	before := map[string]bool{}
	for _, l := range s.fsm.Licenses() {
		before[l.GetSerial()] = true
	}
	s.log.Info("replacing a member", "old", old, "new", nm.GetName(), "new_computer_id", nm.GetComputerId(), "address", with, "force", force)
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_ReplaceMember{ReplaceMember: cmd}}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return nil, err
	}
	s.log.Info("member replaced in the cluster record; the leader swaps the Raft voter", "result", res.GetMessage())
	if err := s.waitReplaced(ctx, nm); err != nil {
		return nil, status.Errorf(codes.DeadlineExceeded, "the replacement is recorded (%s) but not finished: %v; the leader keeps working on it: check `triadctl cluster status`, or run the same command again to wait for it", res.GetMessage(), err)
	}
	leader, _ := s.leaderAddr()
	out := &triadv1.ClusterReplaceMemberResponse{Message: res.GetMessage(), Leader: leader}
	for _, m := range s.cluster().GetMembers() {
		out.Members = append(out.Members, &triadv1.Member{Name: m.GetName(), Address: m.GetGrpcAddress(), ComputerId: m.GetComputerId(), RaftAddress: m.GetRaftAddress()})
	}
	for _, have := range s.fsm.Licenses() {
		delete(before, have.GetSerial())
	}
	for serial := range before {
		out.Removed = append(out.Removed, serial)
	}
	sort.Strings(out.Removed)
	for _, l := range cmd.Licenses {
		for _, have := range s.fsm.Licenses() {
			if have.GetSerial() == l.GetSerial() {
				out.Licenses = append(out.Licenses, s.licenseInfo(have))
			}
		}
	}
	return out, nil
}

// checkReplacement: the new member is unconfigured, empty, compatible and
// on time; the old one is dead (unless forced).
func (s *Server) checkReplacement(ctx context.Context, c *fsmpb.FormCluster, oldM, nm *fsmpb.Member, d *triadv1.DiscoverResponse, info *peerpb.InfoResponse, force bool) error {
	with := nm.GetGrpcAddress()
	switch {
	case d.GetMode() != ModeUnconfigured || info.GetMode() != ModeUnconfigured:
		return status.Errorf(codes.FailedPrecondition, "the new member %s (%s) already belongs to a %s cluster: the replacement must be a new, unconfigured member (start triadd with an empty data directory)", with, info.GetName(), info.GetMode())
	case info.GetCommitIndex() != 0:
		return status.Errorf(codes.FailedPrecondition, "the new member %s (%s) holds Raft state (commit index %d): start it with an empty data directory", with, info.GetName(), info.GetCommitIndex())
	case info.GetFormatVersion() < s.fsm.MaxFormat():
		return status.Errorf(codes.FailedPrecondition, "the new member %s runs command format %d (version %s) and this cluster's members run format %d: install the version the other members run on it (docs/upgrading.md)", with, info.GetFormatVersion(), info.GetVersion(), s.fsm.MaxFormat())
	case info.GetPeerProtocolVersion() != PeerProtocolVersion:
		return status.Errorf(codes.FailedPrecondition, "the new member %s runs an incompatible version (%s, peer protocol %d; this member: %s, protocol %d): run the same Triad version", with, info.GetVersion(), info.GetPeerProtocolVersion(), Version, PeerProtocolVersion)
	}
	if skew := time.Duration(info.GetNowMs()-s.nowMs()) * time.Millisecond; skew > maxClockSkew || skew < -maxClockSkew {
		return status.Errorf(codes.FailedPrecondition, "the clock of the new member %s differs from this member's by %s (at most %s allowed): synchronise the clocks (NTP) and retry", with, skew.Round(time.Second), maxClockSkew)
	}
	for _, m := range c.GetMembers() {
		if m.GetName() != oldM.GetName() && (m.GetName() == nm.GetName() || m.GetComputerId() == nm.GetComputerId()) {
			return status.Errorf(codes.FailedPrecondition, "the new member %s is named %s with computer ID %s, like member %s (%s): the replacement is another machine with its own --name", with, nm.GetName(), nm.GetComputerId(), m.GetName(), m.GetComputerId())
		}
	}
	if nm.GetName() == oldM.GetName() {
		return status.Errorf(codes.FailedPrecondition, "the new member %s has the dead member's name %s: give the new machine a name of its own (--name); Raft knows members by name, and would take the new machine for the old one", with, nm.GetName())
	}
	if oldM.GetName() == s.cfg.Name {
		return status.Errorf(codes.FailedPrecondition, "member %s is the member you are connected to, and it is running: a member is replaced only when it is dead; run the command against a surviving member", oldM.GetName())
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := s.peerClient(oldM.GetRaftAddress()).Info(cctx, &peerpb.InfoRequest{})
	cancel()
	if err == nil && !force {
		return status.Errorf(codes.FailedPrecondition, "member %s is running (it answers on its failover port %s): a member is replaced only when it is dead; stop it for good first, or pass --force to replace a running machine that you will stop right after", oldM.GetName(), oldM.GetRaftAddress())
	}
	return nil
}

// candidateInfo asks Peer.Info of a member that may not be in the
// cluster yet (the replacement).
func (s *Server) candidateInfo(ctx context.Context, addr string) (*peerpb.InfoResponse, error) {
	conn, err := s.side.CandidateConn(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return peerpb.NewPeerClient(conn).Info(cctx, &peerpb.InfoRequest{})
}

// waitReplaced waits until this member's Raft configuration has exactly
// the record's voters and the new member has learnt it belongs to the
// cluster.
func (s *Server) waitReplaced(ctx context.Context, nm *fsmpb.Member) error {
	// Answer a second before the caller gives up, so that it learns the
	// replacement is recorded and how to finish it.
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Add(-time.Second).Before(deadline) {
		deadline = d.Add(-time.Second)
	}
	var last error
	for {
		if last = s.replacedYet(ctx, nm); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) replacedYet(ctx context.Context, nm *fsmpb.Member) error {
	if diff := s.voterDiff(); diff != "" {
		return fmt.Errorf("Raft voters differ from the cluster record: %s", diff)
	}
	info, err := s.candidateInfo(ctx, nm.GetRaftAddress())
	if err != nil {
		return fmt.Errorf("the new member %s does not answer: %v", nm.GetName(), status.Convert(err).Message())
	}
	if info.GetMode() == ModeUnconfigured {
		return fmt.Errorf("the new member %s has not received the cluster's state yet", nm.GetName())
	}
	return nil
}

// voterDiff describes how Raft's configuration differs from the record
// ("" when it has exactly the record's voters at the record's addresses).
func (s *Server) voterDiff() string {
	c := s.fsm.Cluster()
	if c == nil {
		return ""
	}
	f := s.node.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err.Error()
	}
	add, remove := voterChanges(c, f.Configuration())
	var parts []string
	for _, srv := range remove {
		parts = append(parts, "remove "+string(srv.ID))
	}
	for _, srv := range add {
		parts = append(parts, "add "+string(srv.ID)+" at "+string(srv.Address))
	}
	return strings.Join(parts, ", ")
}

// voterChanges lists the servers to remove from and add to cfg so that it
// has the record's members as voters.
func voterChanges(c *fsmpb.FormCluster, cfg raft.Configuration) (add, remove []raft.Server) {
	want := map[raft.ServerID]raft.ServerAddress{}
	for _, m := range c.GetMembers() {
		want[raft.ServerID(m.GetName())] = raft.ServerAddress(m.GetRaftAddress())
	}
	have := map[raft.ServerID]raft.Server{}
	for _, srv := range cfg.Servers {
		have[srv.ID] = srv
		if _, ok := want[srv.ID]; !ok {
			remove = append(remove, srv)
		}
	}
	for _, m := range c.GetMembers() {
		id := raft.ServerID(m.GetName())
		if srv, ok := have[id]; !ok || srv.Address != want[id] || srv.Suffrage != raft.Voter {
			add = append(add, raft.Server{Suffrage: raft.Voter, ID: id, Address: want[id]})
		}
	}
	return add, remove
}

// reconcileVoters (leader duty, every second) makes one change towards
// Raft voters equal to the cluster record: removals first, so that the
// quorum never counts the dead member and the new one together.
func (s *Server) reconcileVoters() {
	// The failover port must accept the new member before Raft dials it.
	s.adoptFormation()
	if s.cfg.HoldReconcileFile != "" {
		if _, err := os.Stat(s.cfg.HoldReconcileFile); err == nil {
			return
		}
	}
	c := s.fsm.Cluster()
	if c == nil || c.GetMode() != ModeFailover {
		return
	}
	f := s.node.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	add, remove := voterChanges(c, f.Configuration())
	if len(remove) > 0 {
		srv := remove[0]
		err := s.node.raft.RemoveServer(srv.ID, 0, 10*time.Second).Error()
		s.log.Info("replace: removed the old member from the Raft voters", "member", srv.ID, "address", srv.Address, "error", err)
		return
	}
	if len(add) > 0 {
		srv := add[0]
		err := s.node.raft.AddVoter(srv.ID, srv.Address, 0, 10*time.Second).Error()
		s.log.Info("replace: added the new member to the Raft voters", "member", srv.ID, "address", srv.Address, "error", err)
	}
}

// sameMembers reports whether two cluster records have the same members.
func sameMembers(a, b *fsmpb.FormCluster) bool {
	if len(a.GetMembers()) != len(b.GetMembers()) {
		return false
	}
	for i := range a.GetMembers() {
		if !proto.Equal(a.GetMembers()[i], b.GetMembers()[i]) {
			return false
		}
	}
	return true
}
