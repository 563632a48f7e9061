package notify

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"text/template"
	"time"
)

// Event kinds (also the keys of notify.events in the config file).
const (
	MemberStart      = "member_start"
	MemberStop       = "member_stop"
	MemberDown       = "member_down"
	MemberUp         = "member_up"
	QuorumLost       = "quorum_lost"
	QuorumRestored   = "quorum_restored"
	MemberIsolated   = "member_isolated"
	DiskUsageEvent   = "disk_usage"
	LicensesExpiring = "licenses_expiring"
	OverCapacity     = "feature_over_capacity"
	PoolLow          = "countdown_pool_low"
	Test             = "test"
)

// Event is one notification: the fields templates can use.
type Event struct {
	// Kind is one of the constants above.
	Kind string
	// Sender is the member that sends the notification.
	Sender string
	// Member is the member the event is about (the stopped, down or
	// isolated one; the sender for its own events).
	Member string
	// Time is when the event was detected (the sender's clock).
	Time time.Time
	// Since: for member_down and quorum_lost, when the condition began.
	Since time.Time
	// Message is a one-line description in plain words.
	Message string
	// DiskPercent and DiskThreshold (disk_usage): the data file system's
	// use in whole percent and the configured threshold; DataDir is the
	// data directory measured.
	DiskPercent, DiskThreshold int
	DataDir                    string
	// Licenses (licenses_expiring): the licenses ending within
	// WarningDays, soonest first.
	Licenses    []License
	WarningDays int
	// Subject of feature_over_capacity and countdown_pool_low: the feature.
	Feature string
	// Leader is the leader's name when known ("" otherwise).
	Leader string
}

// License is one license in the licenses_expiring message.
type License struct {
	Serial     string
	ValidUntil time.Time
	// DaysLeft is the whole days left (0 on its last day).
	DaysLeft int
	Message  string
}

type tmpl struct{ subject, body string }

// common is the footer of every default body.
const common = `
member:  {{.Sender}}
time:    {{.Time.Format "2006-01-02 15:04:05 MST"}}
{{- if .Leader}}
leader:  {{.Leader}}{{end}}

-- 
Triad license server notification ({{.Kind}})
`

var defaults = map[string]tmpl{
	MemberStart:    {"[Triad] member {{.Member}} started", "Member {{.Member}} started.\n" + common},
	MemberStop:     {"[Triad] member {{.Member}} stopped", "Member {{.Member}} stopped (clean shutdown).\n" + common},
	MemberDown:     {"[Triad] member {{.Member}} is down", "{{.Message}}\nDown since: {{.Since.Format \"2006-01-02 15:04:05 MST\"}}\n" + common},
	MemberUp:       {"[Triad] member {{.Member}} is reachable again", "{{.Message}}\n" + common},
	QuorumLost:     {"[Triad] quorum lost: no leader", "{{.Message}}\nNo leader since: {{.Since.Format \"2006-01-02 15:04:05 MST\"}}\nCheckouts and renewals fail until two members reach each other again.\n" + common},
	QuorumRestored: {"[Triad] quorum restored: leader {{.Leader}}", "{{.Message}}\n" + common},
	MemberIsolated: {"[Triad] member {{.Member}} is isolated", "{{.Message}}\n" + common},
	DiskUsageEvent: {"[Triad] data disk of {{.Member}} is {{.DiskPercent}}% full", "The file system holding {{.DataDir}} on member {{.Member}} is {{.DiskPercent}}% full (notification threshold {{.DiskThreshold}}%).\nA member whose data disk is full stops serving: free space or grow the disk.\n" + common},
	LicensesExpiring: {"[Triad] {{len .Licenses}} license(s) expire within {{.WarningDays}} days",
		"Licenses expiring within {{.WarningDays}} days:\n{{range .Licenses}}  {{.Serial}}  ends {{.ValidUntil.Format \"2006-01-02 15:04 MST\"}} ({{.DaysLeft}} days left)\n{{end}}\nAsk the vendor for their renewal and enroll it with `triadctl license enroll`.\n" + common},
	OverCapacity: {"[Triad] feature {{.Feature}} is over capacity", "{{.Message}}\n" + common},
	PoolLow:      {"[Triad] countdown pool of {{.Feature}} is low", "{{.Message}}\n" + common},
	Test:         {"[Triad] test notification from {{.Sender}}", "This is a test notification sent by `triadctl` through member {{.Sender}}.\nIf you read it, the channel works.\n" + common},
}

// Kinds lists the event kinds, sorted.
func Kinds() []string {
	out := make([]string, 0, len(defaults))
	for k := range defaults {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func render(name, text string, e Event) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, e); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Render returns the subject (one line) and body of e, from the configured
// templates or the defaults. A configured template that fails at run time
// (it was checked against a sample at load) falls back to the default and
// the error is returned alongside, to be logged.
func (c *Config) Render(e Event) (subject, body string, err error) {
	d := defaults[e.Kind]
	st, bt := d.subject, d.body
	if ec := c.Events[e.Kind]; ec != nil {
		if ec.Subject != "" {
			st = ec.Subject
		}
		if ec.Body != "" {
			bt = ec.Body
		}
	}
	var errs []string
	if subject, err = render("subject", st, e); err != nil {
		errs = append(errs, "subject: "+err.Error())
		subject, _ = render("subject", d.subject, e)
	}
	if body, err = render("body", bt, e); err != nil {
		errs = append(errs, "body: "+err.Error())
		body, _ = render("body", d.body, e)
	}
	// A subject is one header line.
	subject = strings.Join(strings.Fields(subject), " ")
	if len(errs) > 0 {
		return subject, body, fmt.Errorf("template of %s: %s (the default was used)", e.Kind, strings.Join(errs, "; "))
	}
	return subject, body, nil
}

// sample is an event with every field filled, to check templates at load.
func sample(kind string) Event {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return Event{Kind: kind, Sender: "alpha", Member: "bravo", Time: t, Since: t.Add(-time.Minute), Message: "sample",
		DiskPercent: 81, DiskThreshold: 80, DataDir: "/var/lib/triad", WarningDays: 7, Feature: "cad", Leader: "alpha",
		Licenses: []License{{Serial: "L1", ValidUntil: t.Add(72 * time.Hour), DaysLeft: 3, Message: "sample"}}}
}
