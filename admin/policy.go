package admin

// The connect rules of the DSLS failover documentation (shared/seeds):
// which password a connect asks for, when the session is forced to
// restricted mode and when the connection is refused. Decide is a pure
// function of the table inputs; Resolve applies the password given.

// Modes and policies, as triadctl and the Admin service spell them.
const (
	ModeFull       = "full"
	ModeRestricted = "restricted"

	PolicyFull       = "full"
	PolicyRestricted = "restricted"
	PolicyNone       = "none"
)

// Ask says which password a connect needs.
type Ask int

const (
	// AskNone: no password requested.
	AskNone Ask = iota
	// AskFull: the full password; the restricted one is accepted too and
	// then forces restricted mode (table "full", both passwords set).
	AskFull
	// AskFullOrRestricted: either password.
	AskFullOrRestricted
)

func (a Ask) String() string {
	return [...]string{"no password", "password for full mode", "password for full or restricted mode"}[a]
}

// ConnectInput is one cell's coordinates in the tables.
type ConnectInput struct {
	// Mode asked: ModeFull (the connect command) or ModeRestricted.
	Mode string
	// Local: the tool came through the member's Unix socket.
	Local bool
	// PeerMember: the tool runs on one of the other two members.
	PeerMember bool
	// Activated: a license is enrolled; before that the policy is ignored.
	Activated bool
	Policy    string
	// Which passwords are set (restricted can only be set after full).
	FullSet, RestrictedSet bool
}

// Rule is one cell of the tables.
type Rule struct {
	Refused bool
	Ask     Ask
	// ForcedRestricted: the session is restricted whatever was asked.
	ForcedRestricted bool
	// Table names the table the cell comes from: "full", "restricted" or "none".
	Table string
}

// Decide returns the rule for a connect. A local tool, one of the other two
// members, and any tool before activation follow the "full" table.
func Decide(in ConnectInput) Rule {
	policy := in.Policy
	if in.Local || in.PeerMember || !in.Activated || policy == "" {
		policy = PolicyFull
	}
	full := in.Mode != ModeRestricted
	switch policy {
	case PolicyNone:
		return Rule{Refused: true, Table: PolicyNone}
	case PolicyRestricted:
		r := Rule{Table: PolicyRestricted, ForcedRestricted: true}
		if in.FullSet && in.RestrictedSet {
			r.Ask = AskFullOrRestricted
		}
		return r
	default:
		r := Rule{Table: PolicyFull}
		switch {
		case !in.FullSet:
			// No password set: none requested.
		case !in.RestrictedSet:
			if full {
				r.Ask = AskFull
			}
		default:
			if full {
				r.Ask = AskFull
			} else {
				r.Ask = AskFullOrRestricted
			}
		}
		if !full {
			r.ForcedRestricted = true // asked for restricted: it is what it gets
		}
		return r
	}
}

// Match says which stored password a candidate matches.
type Match struct {
	Given            bool
	Full, Restricted bool
}

// Outcome of a connect once the password is checked.
type Outcome int

const (
	Granted Outcome = iota
	PasswordRequired
	WrongPassword
	Refused
)

// Resolve applies the password to a rule: the session mode, or why not.
// forced reports a full connect turned restricted (by policy or because
// the restricted password was given).
func Resolve(r Rule, asked string, m Match) (mode string, forced bool, out Outcome) {
	if r.Refused {
		return "", false, Refused
	}
	mode = ModeFull
	if r.ForcedRestricted {
		mode = ModeRestricted
	}
	switch r.Ask {
	case AskFull:
		switch {
		case !m.Given:
			return "", false, PasswordRequired
		case m.Full:
		case m.Restricted:
			mode = ModeRestricted
		default:
			return "", false, WrongPassword
		}
	case AskFullOrRestricted:
		switch {
		case !m.Given:
			return "", false, PasswordRequired
		case m.Full || m.Restricted:
		default:
			return "", false, WrongPassword
		}
	}
	return mode, asked != ModeRestricted && mode == ModeRestricted, Granted
}
