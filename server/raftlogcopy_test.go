package server

import (
	"testing"

	"github.com/hashicorp/raft"
)

// ptrStore records the pointers it is handed, as raft.LogCache keeps them.
type ptrStore struct {
	raft.LogStore
	got []*raft.Log
}

func (p *ptrStore) StoreLog(l *raft.Log) error { p.got = append(p.got, l); return nil }
func (p *ptrStore) StoreLogs(ls []*raft.Log) error {
	p.got = append(p.got, ls...)
	return nil
}

// detachedLogs hands the store copies, never the caller's pointers (the
// leader's are fields of its apply futures, which would stay reachable,
// FSM answers included, for as long as the cache keeps them), with every
// field intact.
func TestDetachedLogsStoreCopies(t *testing.T) {
	inner := &ptrStore{}
	d := detachedLogs{inner}
	logs := []*raft.Log{
		{Index: 7, Term: 2, Type: raft.LogCommand, Data: []byte("seven"), Extensions: []byte("x")},
		{Index: 8, Term: 2, Type: raft.LogCommand, Data: []byte("eight")},
	}
	single := &raft.Log{Index: 9, Term: 3, Type: raft.LogBarrier}
	if err := d.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := d.StoreLog(single); err != nil {
		t.Fatal(err)
	}
	want := append(logs, single)
	if len(inner.got) != len(want) {
		t.Fatalf("store got %d logs, want %d", len(inner.got), len(want))
	}
	for i, w := range want {
		g := inner.got[i]
		if g == w {
			t.Errorf("log %d: the store got the caller's pointer, not a copy", w.Index)
		}
		if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || string(g.Data) != string(w.Data) || string(g.Extensions) != string(w.Extensions) {
			t.Errorf("log %d: the store got %+v, want the fields of %+v", w.Index, g, w)
		}
	}
}
