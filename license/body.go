package license

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/triadlm/triad/featver"
)

// FormatVersion is the only body format this package reads and writes.
const FormatVersion = 1

// Binding modes: which kind of cluster a license may be enrolled on.
const (
	ModeStandalone = "standalone" // one member, one computer id
	ModeFailover   = "failover"   // three members, three distinct computer ids
)

// Feature models.
const (
	ModelConcurrent = "concurrent" // a seat is held while a client holds a lease
	ModelNamedUser  = "named-user" // a seat is tied to a user until recycled
	ModelCountdown  = "countdown"  // a pool of usage hours, consumed while seats are held
)

// Limits: what happens when a feature's seats are all in use.
const (
	LimitHard = "hard" // refuse the request
	LimitSoft = "soft" // grant up to Overdraft more seats and raise an alarm
)

// DefaultGraceSeconds is the client grace period used when a feature's
// GraceSeconds is 0.
const DefaultGraceSeconds = 7200

// Body is what the vendor signs. Its JSON encoding (see canonicalJSON) is the
// exact byte string covered by the signature, so the field order here is part
// of the file format: do not reorder, rename or add fields without a new
// FormatVersion.
type Body struct {
	FormatVersion int       `json:"format_version"`
	Serial        string    `json:"serial"`
	IssuedTo      string    `json:"issued_to"`
	IssuedAt      time.Time `json:"issued_at"`
	ValidAfter    time.Time `json:"valid_after"`
	ValidUntil    time.Time `json:"valid_until"`
	Supersedes    []string  `json:"supersedes"`
	Binding       Binding   `json:"binding"`
	Features      []Feature `json:"features"`
	Description   string    `json:"description,omitempty"`
}

// Binding ties a license to one cluster: its mode and its computer ids.
type Binding struct {
	Mode        string   `json:"mode"`
	ComputerIDs []string `json:"computer_ids"`
}

// Feature is one product the license grants seats for. Model and Limit are
// always explicit in a signed body (Sign fills the defaults), so readers need
// not handle "". GraceSeconds and MaxBorrowSeconds keep 0 in the body; use
// Grace and MaxBorrow for their meaning.
type Feature struct {
	Name             string `json:"name"`
	Version          uint32 `json:"version"`
	Count            uint32 `json:"count"`
	Model            string `json:"model"`
	GraceSeconds     uint32 `json:"grace_seconds"`
	MaxBorrowSeconds uint32 `json:"max_borrow_seconds"`
	Limit            string `json:"limit"`
	// Overdraft is how many seats a soft limit grants beyond Count.
	Overdraft uint32 `json:"overdraft,omitempty"`
	// UsageHours is the pool of a countdown feature: seat-hours that are
	// consumed while seats are held.
	UsageHours uint32 `json:"usage_hours,omitempty"`
	// VersionText is a dotted version ("2.1", "2024.06", "5.3.1") as the
	// vendor wrote it; Version then holds its first component. Empty for a
	// whole-number version, so files written before dotted versions keep
	// their exact bytes. See package featver for the order.
	VersionText string `json:"version_text,omitempty"`
	// Components makes the feature a package (FlexNet PACKAGE with
	// OPTIONS=SUITE): a checkout of it grants these features too, and a
	// checkout of a component takes a seat of the package unless the same
	// user and host already hold one. Empty for an ordinary feature.
	Components []string `json:"components,omitempty"`
	// LingerSeconds keeps a released seat reserved for the same user and
	// host this long (FlexNet LINGER, RLM hold=); 0 = no linger. A LINGER
	// access rule may lengthen it, never shorten it.
	LingerSeconds uint32 `json:"linger_seconds,omitempty"`
	// MinTimeoutSeconds is the vendor's minimum idle timeout: a TIMEOUT
	// access rule for the feature may not be shorter (FlexNet's
	// vendor-set minimum TIMEOUT); 0 = no minimum.
	MinTimeoutSeconds uint32 `json:"min_timeout_seconds,omitempty"`
}

// VersionKey is the feature's version in featver order (the body must be
// valid).
func (f Feature) VersionKey() featver.Key {
	k, _ := featver.Of(f.Version, f.VersionText)
	return k
}

// VersionString is the feature's version as licensed: "5", "2.1".
func (f Feature) VersionString() string { return featver.Display(f.Version, f.VersionText) }

// Grace is how long a client may go without a heartbeat before its seat is
// freed; 0 in the body means DefaultGraceSeconds.
func (f Feature) Grace() time.Duration {
	if f.GraceSeconds == 0 {
		return DefaultGraceSeconds * time.Second
	}
	return time.Duration(f.GraceSeconds) * time.Second
}

// MaxBorrow is the longest offline lease a client may take; 0 means
// borrowing is not allowed.
func (f Feature) MaxBorrow() time.Duration {
	return time.Duration(f.MaxBorrowSeconds) * time.Second
}

// Linger is how long a released seat stays reserved for its user and host.
func (f Feature) Linger() time.Duration {
	return time.Duration(f.LingerSeconds) * time.Second
}

// MinTimeout is the shortest idle timeout an access rule may set.
func (f Feature) MinTimeout() time.Duration {
	return time.Duration(f.MinTimeoutSeconds) * time.Second
}

// normalized returns a copy of b in the one form that gets signed: UTC times
// truncated to seconds (JSON would otherwise carry the signer's zone and
// nanoseconds, giving one license many encodings), explicit defaults, and
// empty rather than nil lists (so "[]" and "null" cannot both appear).
func (b Body) normalized() Body {
	n := b
	if n.FormatVersion == 0 {
		n.FormatVersion = FormatVersion
	}
	n.IssuedAt = normTime(n.IssuedAt)
	n.ValidAfter = normTime(n.ValidAfter)
	n.ValidUntil = normTime(n.ValidUntil)
	n.Supersedes = append([]string{}, b.Supersedes...)
	n.Binding.ComputerIDs = append([]string{}, b.Binding.ComputerIDs...)
	n.Features = append([]Feature{}, b.Features...)
	for i := range n.Features {
		if n.Features[i].Model == "" {
			n.Features[i].Model = ModelConcurrent
		}
		if n.Features[i].Limit == "" {
			n.Features[i].Limit = LimitHard
		}
	}
	return n
}

func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// canonicalJSON is the byte string that gets signed: compact encoding/json
// output of the normalised body. Parse insists that a file's body bytes are
// exactly this, so a license has one encoding and a parsed Body can be
// re-encoded to the bytes the signature covers.
func canonicalJSON(b Body) ([]byte, error) {
	data, err := json.Marshal(b.normalized())
	if err != nil {
		return nil, fmt.Errorf("encode license body: %w", err)
	}
	return data, nil
}
