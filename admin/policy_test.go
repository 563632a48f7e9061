package admin

import "testing"

// The three password tables of the DSLS failover documentation, one row per
// cell: which password each connect command asks, when the connection is
// forced to restricted mode, when it is refused. Remote tool, activated
// cluster unless the row says otherwise.
func TestDecideTables(t *testing.T) {
	type pw struct{ full, restricted bool }
	none, onlyFull, both := pw{}, pw{full: true}, pw{full: true, restricted: true}
	for _, tc := range []struct {
		name   string
		policy string
		pw     pw
		mode   string
		want   Rule
	}{
		// Table 1: remote administration fully authorized (also local tools).
		{"full/no password/connect", PolicyFull, none, ModeFull, Rule{Ask: AskNone, Table: PolicyFull}},
		{"full/no password/connect restricted", PolicyFull, none, ModeRestricted, Rule{Ask: AskNone, ForcedRestricted: true, Table: PolicyFull}},
		{"full/only full/connect", PolicyFull, onlyFull, ModeFull, Rule{Ask: AskFull, Table: PolicyFull}},
		{"full/only full/connect restricted", PolicyFull, onlyFull, ModeRestricted, Rule{Ask: AskNone, ForcedRestricted: true, Table: PolicyFull}},
		{"full/both/connect", PolicyFull, both, ModeFull, Rule{Ask: AskFull, Table: PolicyFull}},
		{"full/both/connect restricted", PolicyFull, both, ModeRestricted, Rule{Ask: AskFullOrRestricted, ForcedRestricted: true, Table: PolicyFull}},
		// Table 2: remote administration restricted.
		{"restricted/no password/connect", PolicyRestricted, none, ModeFull, Rule{Ask: AskNone, ForcedRestricted: true, Table: PolicyRestricted}},
		{"restricted/no password/connect restricted", PolicyRestricted, none, ModeRestricted, Rule{Ask: AskNone, ForcedRestricted: true, Table: PolicyRestricted}},
		{"restricted/only full/connect", PolicyRestricted, onlyFull, ModeFull, Rule{Ask: AskNone, ForcedRestricted: true, Table: PolicyRestricted}},
		{"restricted/only full/connect restricted", PolicyRestricted, onlyFull, ModeRestricted, Rule{Ask: AskNone, ForcedRestricted: true, Table: PolicyRestricted}},
		{"restricted/both/connect", PolicyRestricted, both, ModeFull, Rule{Ask: AskFullOrRestricted, ForcedRestricted: true, Table: PolicyRestricted}},
		{"restricted/both/connect restricted", PolicyRestricted, both, ModeRestricted, Rule{Ask: AskFullOrRestricted, ForcedRestricted: true, Table: PolicyRestricted}},
		// Table 3: remote administration denied.
		{"none/no password/connect", PolicyNone, none, ModeFull, Rule{Refused: true, Table: PolicyNone}},
		{"none/no password/connect restricted", PolicyNone, none, ModeRestricted, Rule{Refused: true, Table: PolicyNone}},
		{"none/only full/connect", PolicyNone, onlyFull, ModeFull, Rule{Refused: true, Table: PolicyNone}},
		{"none/only full/connect restricted", PolicyNone, onlyFull, ModeRestricted, Rule{Refused: true, Table: PolicyNone}},
		{"none/both/connect", PolicyNone, both, ModeFull, Rule{Refused: true, Table: PolicyNone}},
		{"none/both/connect restricted", PolicyNone, both, ModeRestricted, Rule{Refused: true, Table: PolicyNone}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(ConnectInput{Mode: tc.mode, Activated: true, Policy: tc.policy, FullSet: tc.pw.full, RestrictedSet: tc.pw.restricted})
			if got != tc.want {
				t.Fatalf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Local tools, the other two members and any tool before activation follow
// the "full" table whatever the policy.
func TestDecideExemptions(t *testing.T) {
	for _, policy := range []string{PolicyFull, PolicyRestricted, PolicyNone} {
		for name, in := range map[string]ConnectInput{
			"local":         {Local: true, Activated: true},
			"other member":  {PeerMember: true, Activated: true},
			"not activated": {Activated: false},
		} {
			in.Policy, in.Mode, in.FullSet = policy, ModeFull, true
			got := Decide(in)
			want := Rule{Ask: AskFull, Table: PolicyFull}
			if got != want {
				t.Errorf("%s under policy %s: %+v, want %+v", name, policy, got, want)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	full := Rule{Ask: AskFull, Table: PolicyFull}
	either := Rule{Ask: AskFullOrRestricted, ForcedRestricted: true, Table: PolicyRestricted}
	for _, tc := range []struct {
		name       string
		rule       Rule
		asked      string
		m          Match
		wantMode   string
		wantForced bool
		wantOut    Outcome
	}{
		{"no password needed", Rule{Table: PolicyFull}, ModeFull, Match{}, ModeFull, false, Granted},
		{"full password missing", full, ModeFull, Match{}, "", false, PasswordRequired},
		{"full password right", full, ModeFull, Match{Given: true, Full: true}, ModeFull, false, Granted},
		{"full password wrong", full, ModeFull, Match{Given: true}, "", false, WrongPassword},
		{"restricted password on connect forces restricted", full, ModeFull, Match{Given: true, Restricted: true}, ModeRestricted, true, Granted},
		{"either: restricted password", either, ModeRestricted, Match{Given: true, Restricted: true}, ModeRestricted, false, Granted},
		{"either: full password, policy forces restricted", either, ModeFull, Match{Given: true, Full: true}, ModeRestricted, true, Granted},
		{"either: missing", either, ModeFull, Match{}, "", false, PasswordRequired},
		{"either: wrong", either, ModeFull, Match{Given: true}, "", false, WrongPassword},
		{"refused", Rule{Refused: true}, ModeFull, Match{Given: true, Full: true}, "", false, Refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode, forced, out := Resolve(tc.rule, tc.asked, tc.m)
			if mode != tc.wantMode || forced != tc.wantForced || out != tc.wantOut {
				t.Fatalf("Resolve = %q %v %v, want %q %v %v", mode, forced, out, tc.wantMode, tc.wantForced, tc.wantOut)
			}
		})
	}
}
