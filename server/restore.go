package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/server/backup"
)

// RestoreOptions is what `triadd restore` is given.
type RestoreOptions struct {
	// Backup is the file written by `triadctl snapshot save`.
	Backup string
	// DataDir is the member's data directory: empty, or one whose Raft
	// state was moved away (its computer-id file may stay).
	DataDir string
	// Name is the member this machine is (its --name).
	Name string
	// MachineID overrides the machine identity (tests only); "" reads
	// /etc/machine-id.
	MachineID string
}

// RestoreResult says what a restore wrote.
type RestoreResult struct {
	Member, ComputerID, ClusterID string
	Index, Term                   uint64
	Licenses, Leases              int
}

// Restore rebuilds a member's data directory from a backup, offline: the
// member starts from the backup's state at its Raft index and term, with
// the backup's three voters; started on all three machines, the members
// elect a leader and carry on from there (leases keep their secrets; the
// new leader restarts their TTLs). Started on one machine while the other
// two run, the member catches up from them.
//
// A backup restores only on the machines it was taken from (the same
// instance): the data directory's computer ID, or, in an empty data
// directory, the machine identity proved against the backup's record, must
// be that of the member named.
func Restore(o RestoreOptions) (*RestoreResult, error) {
	f, err := os.Open(o.Backup)
	if err != nil {
		return nil, fmt.Errorf("open the backup: %w", err)
	}
	hdr, data, err := backup.Read(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w: nothing restored", o.Backup, err)
	}
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(data, snap); err != nil {
		return nil, fmt.Errorf("backup %s: %w", o.Backup, err)
	}
	c := snap.GetCluster()
	if c == nil || len(c.GetMembers()) == 0 {
		return nil, fmt.Errorf("backup %s holds no cluster record: nothing restored", o.Backup)
	}
	var me *fsmpb.BackupMember
	var names []string
	for _, m := range hdr.GetMembers() {
		names = append(names, fmt.Sprintf("%s (%s)", m.GetName(), m.GetComputerId()))
		if m.GetName() == o.Name {
			me = m
		}
	}
	if me == nil {
		return nil, fmt.Errorf("the backup's cluster has no member named %q (members: %s): give --name as the member was named", o.Name, strings.Join(names, ", "))
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", o.DataDir, err)
	}
	if err := checkSameInstance(o, hdr, me, names); err != nil {
		return nil, err
	}
	raftDir := filepath.Join(o.DataDir, "raft")
	if entries, err := os.ReadDir(raftDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("data directory %s already holds Raft state (%s): a restore writes only into an empty one; stop the member and move %s away first", o.DataDir, raftDir, raftDir)
	}
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, err
	}

	// Administration sessions do not survive a restore: the session that
	// took the backup would otherwise hold the full-access lock.
	snap.AdminSessions = nil
	data, err = proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		return nil, err
	}
	if stored, _ := membership.StoredComputerID(o.DataDir); stored == "" {
		if err := membership.RestoreComputerID(o.DataDir, me.GetComputerId()); err != nil {
			return nil, err
		}
	}
	if err := membership.SaveFormation(o.DataDir, c); err != nil {
		return nil, err
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("create the raft log: %w", err)
	}
	// Raft's term must be at least the snapshot's, or a new leader would
	// append entries of a lower term after it.
	if err := store.SetUint64([]byte("CurrentTerm"), hdr.GetTerm()); err != nil {
		store.Close()
		return nil, err
	}
	if err := store.Close(); err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
	if err != nil {
		return nil, err
	}
	var cfg raft.Configuration
	for _, m := range c.GetMembers() {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.GetName()), Address: raft.ServerAddress(m.GetRaftAddress())})
	}
	sort.Slice(cfg.Servers, func(i, j int) bool { return cfg.Servers[i].ID < cfg.Servers[j].ID })
	// The transport only encodes the legacy peer list (addresses as bytes,
	// as the network transport does).
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, hdr.GetIndex(), hdr.GetTerm(), cfg, hdr.GetIndex(), trans)
	if err != nil {
		return nil, fmt.Errorf("create the raft snapshot: %w", err)
	}
	if _, err := sink.Write(data); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("write the raft snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return nil, fmt.Errorf("write the raft snapshot: %w", err)
	}
	return &RestoreResult{Member: me.GetName(), ComputerID: me.GetComputerId(), ClusterID: hdr.GetClusterId(),
		Index: hdr.GetIndex(), Term: hdr.GetTerm(), Licenses: len(snap.GetLicenses()), Leases: len(snap.GetLeases())}, nil
}

// checkSameInstance refuses a restore on another machine than the
// member's: the data directory's computer ID must be the member's, or, in
// a data directory without one, this machine's proof must match the one
// the backup recorded for the member.
func checkSameInstance(o RestoreOptions, hdr *fsmpb.BackupHeader, me *fsmpb.BackupMember, names []string) error {
	stored, err := membership.StoredComputerID(o.DataDir)
	if err != nil {
		return err
	}
	const same = "a backup restores only on the machines it was taken from (the same instance); to move a member to another machine, run `triadctl cluster replace-member` with a license for the new machine"
	if stored != "" {
		if stored == me.GetComputerId() {
			return nil
		}
		for _, m := range hdr.GetMembers() {
			if m.GetComputerId() == stored {
				return fmt.Errorf("refused: data directory %s belongs to member %s (computer ID %s), not to %s: restore each member on its own machine with its own --name", o.DataDir, m.GetName(), stored, o.Name)
			}
		}
		return fmt.Errorf("refused: this machine's computer ID %s (in %s) is not bound in the backup's cluster (members: %s): %s", stored, o.DataDir, strings.Join(names, ", "), same)
	}
	if me.GetMachineProof() == "" {
		return fmt.Errorf("refused: the backup records no machine proof for member %s (it did not answer when the backup was taken, or its machine has no /etc/machine-id), so this machine cannot be recognized: restore into a data directory that kept its computer-id file (%s), or take a backup while all members run", o.Name, me.GetComputerId())
	}
	machine := o.MachineID
	if machine == "" {
		machine = membership.MachineID()
	}
	if membership.MachineProof(machine, me.GetComputerId()) != me.GetMachineProof() {
		return fmt.Errorf("refused: this machine is not the one member %s ran on (computer ID %s is bound to another machine identity): %s", o.Name, me.GetComputerId(), same)
	}
	return nil
}
