package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/server/backup"
)

// SaveSnapshot returns a backup file of the replicated state
// (admin.SnapshotSaver): a Raft snapshot of this member taken once it has
// applied everything the leader had committed when asked (a consistent
// read), so the file holds every write acknowledged before the call, at an
// exact Raft index and term. The header lists the members with their
// computer IDs and machine proofs (asked of the others now; a member that
// does not answer gets none, and can then be restored only into a data
// directory that kept its computer ID).
func (s *Server) SaveSnapshot(ctx context.Context) ([]byte, error) {
	if s.cluster() == nil {
		return nil, status.Error(codes.FailedPrecondition, "the cluster is not formed yet: there is nothing to back up")
	}
	if err := s.readIndex(ctx); err != nil {
		return nil, toStatus(err)
	}
	meta, data, err := s.raftSnapshot()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "taking a snapshot on %s: %v", s.cfg.Name, err)
	}
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(data, snap); err != nil {
		return nil, status.Errorf(codes.Internal, "the snapshot taken on %s does not decode: %v", s.cfg.Name, err)
	}
	c := snap.GetCluster()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "the cluster's formation is not recorded yet: retry in a few seconds")
	}
	hdr := &fsmpb.BackupHeader{Index: meta.Index, Term: meta.Term, CreatedMs: s.nowMs(), Member: s.cfg.Name,
		Version: Version, Mode: c.GetMode()}
	var ids []string
	for _, m := range c.GetMembers() {
		ids = append(ids, m.GetComputerId())
		bm := &fsmpb.BackupMember{Name: m.GetName(), ComputerId: m.GetComputerId(), GrpcAddress: m.GetGrpcAddress(), RaftAddress: m.GetRaftAddress()}
		if m.GetName() == s.cfg.Name {
			if m.GetComputerId() == s.computerID {
				bm.MachineProof = s.machineProof
			}
		} else {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := s.peerClient(m.GetRaftAddress()).Info(cctx, &peerpb.InfoRequest{})
			cancel()
			if err != nil {
				s.log.Warn("backup: a member did not answer; its machine proof is not recorded", "peer", m.GetName(), "error", err)
			} else if info.GetComputerId() == m.GetComputerId() {
				bm.MachineProof = info.GetMachineProof()
			}
		}
		hdr.Members = append(hdr.Members, bm)
	}
	hdr.ClusterId = backup.ClusterID(c.GetMode(), ids)
	file, err := backup.Encode(hdr, data)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding the backup: %v", err)
	}
	s.log.Info("backup taken", "index", meta.Index, "term", meta.Term, "bytes", len(file))
	return file, nil
}

// raftSnapshot takes a Raft snapshot now (or, when nothing was applied
// since the last one, opens that one) and returns its metadata and bytes.
func (s *Server) raftSnapshot() (*raft.SnapshotMeta, []byte, error) {
	f := s.node.raft.Snapshot()
	var (
		meta *raft.SnapshotMeta
		rc   io.ReadCloser
		err  error
	)
	if err = f.Error(); errors.Is(err, raft.ErrNothingNewToSnapshot) {
		list, lerr := s.node.snaps.List()
		if lerr != nil {
			return nil, nil, lerr
		}
		if len(list) == 0 {
			return nil, nil, fmt.Errorf("no snapshot to open")
		}
		meta, rc, err = s.node.snaps.Open(list[0].ID)
	} else if err == nil {
		meta, rc, err = f.Open()
	}
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, nil, err
	}
	return meta, data, nil
}
