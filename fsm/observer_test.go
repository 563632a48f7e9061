package fsm

import (
	"bytes"
	"fmt"
	"google.golang.org/protobuf/proto"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/triadlm/triad/proto/fsmpb"
)

// The observer hears every administration command, in log order, with the
// session it names and the sessions it ended, and nothing of the routine
// traffic; it does not change the state (same snapshot as without it).
func TestAdminObserverEvents(t *testing.T) {
	observed := newHarness(t)
	plain := newHarness(t)
	var got []string
	var events []AdminEvent
	observed.f.SetAdminObserver(func(e AdminEvent) {
		who := "-"
		if e.Session != nil {
			who = e.Session.GetOrigin() + "/" + e.Session.GetMode()
		}
		var ended []string
		for _, s := range e.Ended {
			ended = append(ended, s.GetOrigin())
		}
		code := "batch"
		if r, ok := e.Result.(*fsmpb.OpResult); ok {
			code = r.GetCode().String()
		}
		got = append(got, fmt.Sprintf("%d %s %s %s ended=%s", e.Index, e.Command, who, code, strings.Join(ended, ",")))
		events = append(events, e)
	})
	both := func(now int64, cmd *fsmpb.Command) {
		observed.apply(now, proto.Clone(cmd).(*fsmpb.Command))
		plain.apply(now, proto.Clone(cmd).(*fsmpb.Command))
	}
	both(t0, formCmd("failover", clusterIDs...))
	both(t0, openCmd("s1", ModeFull, false, 0))
	both(t0, openCmd("s2", ModeFull, false, 0)) // refused: s1 holds full access
	both(t0, touchCmd("s1"))
	both(t0, settingsCmd("s1", &fsmpb.AdminSettings{AutoRecycling: boolPtr(true)}))
	both(t0, batchCmd(grantOp("r1", "f", 1, 1)))
	both(t0, &fsmpb.Command{Cmd: &fsmpb.Command_ExpireLeases{ExpireLeases: &fsmpb.ExpireLeases{}}})
	both(t0, expireSessionsCmd())              // nothing idle: no event
	both(t0, openCmd("s3", ModeFull, true, 0)) // local takeover displaces s1
	both(t0, passwordsCmd("s3", []byte("$2a$hash"), nil, 0))
	both(t0, openCmd("s4", ModeRestricted, false, 1))
	both(t0+2*hour, expireSessionsCmd()) // s3 and s4 idle
	both(t0+2*hour, closeCmd("s3"))
	both(t0+2*hour, openCmd("s5", ModeRestricted, false, 1))
	both(t0+4*hour, touchCmd("s5")) // idle: the touch ends it
	both(t0+2*hour, &fsmpb.Command{Cmd: &fsmpb.Command_RemoveLicense{RemoveLicense: &fsmpb.RemoveLicense{Serial: "none"}}})

	want := []string{
		"1 form_cluster - OK ended=",
		"2 open_session tool s1/full OK ended=",
		"3 open_session tool s2/full ALREADY_EXISTS ended=",
		"5 set_settings tool s1/full OK ended=",
		"9 open_session tool s3/full OK ended=tool s1",
		"10 set_passwords tool s3/full OK ended=",
		"11 open_session tool s4/restricted OK ended=",
		"12 expire_sessions - OK ended=tool s3,tool s4",
		"13 close_session tool s3/full OK ended=",
		"14 open_session tool s5/restricted OK ended=",
		"15 touch_session tool s5/restricted NOT_FOUND ended=tool s5",
		// The harness opens its own full session for an admin write.
		"16 open_session tool test-admin-16/full OK ended=",
		"17 remove_license tool test-admin-16/full NOT_FOUND ended=",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !bytes.Equal(observed.f.MarshalSnapshot(), plain.f.MarshalSnapshot()) {
		t.Fatal("the observer changed the state: snapshots differ")
	}
	if events[5].Cmd.GetSetPasswords() == nil || events[5].NowMs != t0 {
		t.Fatalf("set_passwords event %+v", events[5])
	}
}

// ApplyBatch reports the same events as Apply.
func TestAdminObserverApplyBatch(t *testing.T) {
	h := newHarness(t)
	var n int
	h.f.SetAdminObserver(func(AdminEvent) { n++ })
	form := formCmd("failover", clusterIDs...)
	form.NowMs = t0
	open := openCmd("s1", ModeFull, false, 0)
	open.NowMs = t0
	h.f.ApplyBatch(append(commandLogs(t, form, open), commandLog(t, 3, batchCmd(grantOp("r1", "f", 1, 1)))))
	if n != 2 {
		t.Fatalf("%d events from a batch of formation, connect and a grant; want 2", n)
	}
}

func commandLogs(t *testing.T, cmds ...*fsmpb.Command) []*raft.Log {
	var out []*raft.Log
	for i, c := range cmds {
		out = append(out, commandLog(t, uint64(i+1), c))
	}
	return out
}

func boolPtr(b bool) *bool { return &b }
