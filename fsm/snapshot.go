package fsm

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// MarshalSnapshot returns the whole state as deterministic fsmpb.Snapshot
// bytes: equal states give equal bytes.
func (f *FSM) MarshalSnapshot() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.marshalLocked()
}

func (f *FSM) marshalLocked() []byte {
	snap := f.s.toSnapshot()
	snap.AppliedIndex = f.appliedIndex
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		// Only invalid UTF-8 in a string field can fail, and Apply stores
		// nothing that did not itself decode from a valid message.
		panic(fmt.Sprintf("fsm: marshalling the snapshot: %v", err))
	}
	return b
}

// Snapshot captures the state as bytes; Persist only writes them, so Apply
// may run again as soon as Snapshot returns.
// A halted FSM (format.go) refuses: its state stops at the halted entry.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halt != nil {
		return nil, &ErrHalted{*f.halt}
	}
	return &snapshot{data: f.marshalLocked()}, nil
}

type snapshot struct {
	data []byte
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: writing snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("fsm: closing snapshot: %w", err)
	}
	return nil
}

func (s *snapshot) Release() {}

// Restore replaces the whole state with the snapshot read from rc. The new
// state is built aside and swapped in under the lock, so readers see either
// the old state or the new one. On error the old state stays.
// AppliedIndex afterwards is the index the snapshot was taken at.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("fsm: reading snapshot: %w", err)
	}
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(data, snap); err != nil {
		return fmt.Errorf("fsm: decoding snapshot (%d bytes): %w", len(data), err)
	}
	s, err := stateFromSnapshot(snap)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.s = s
	f.appliedIndex = snap.GetAppliedIndex()
	// The snapshot holds the whole state at its index (it decoded): the
	// log after it is applied from there, and halts again if need be.
	f.halt = nil
	f.halted.Store(false)
	f.mu.Unlock()
	return nil
}
