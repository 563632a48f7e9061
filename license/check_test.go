package license

import (
	"testing"
	"time"
)

func TestCheckBinding(t *testing.T) {
	failover := validBody() // failover, ids id-a id-b id-c
	standalone := validBody()
	standalone.Binding = Binding{Mode: ModeStandalone, ComputerIDs: []string{"solo"}}

	tests := []struct {
		name string
		body Body
		mode string
		ids  []string
		want []string // nil means it matches
	}{
		{"failover, same order", failover, ModeFailover, []string{"id-a", "id-b", "id-c"}, nil},
		{"failover, other order", failover, ModeFailover, []string{"id-c", "id-a", "id-b"}, nil},
		{"standalone matches", standalone, ModeStandalone, []string{"solo"}, nil},
		{"one id differs", failover, ModeFailover, []string{"id-a", "id-b", "id-x"},
			[]string{"bound to computer ids [id-a, id-b, id-c]", "this cluster's computer ids are [id-a, id-b, id-x]"}},
		{"an id missing", failover, ModeFailover, []string{"id-a", "id-b"}, []string{"are [id-a, id-b]"}},
		{"an extra id", failover, ModeFailover, []string{"id-a", "id-b", "id-c", "id-d"}, []string{"are [id-a, id-b, id-c, id-d]"}},
		{"an id repeated", failover, ModeFailover, []string{"id-a", "id-a", "id-b"}, []string{"are [id-a, id-a, id-b]"}},
		{"case matters", standalone, ModeStandalone, []string{"SOLO"}, []string{"bound to computer ids [solo]"}},
		{"failover license on standalone member", failover, ModeStandalone, []string{"id-a"},
			[]string{"license TRI-2026-0001 is for a failover cluster, but this cluster runs standalone"}},
		{"standalone license on failover cluster", standalone, ModeFailover, []string{"solo", "b", "c"},
			[]string{"is for a standalone cluster, but this cluster runs failover"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckBinding(&tt.body, tt.mode, tt.ids)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckBinding = %v, want nil", err)
				}
				return
			}
			wantErr(t, err, ErrBinding, tt.want...)
		})
	}
}

func TestCheckDates(t *testing.T) {
	b := validBody() // valid 2026-01-01 00:00:00 .. 2027-01-01 23:59:59 UTC
	after, until := b.ValidAfter, b.ValidUntil
	tests := []struct {
		name string
		now  time.Time
		kind error // nil means valid
		want string
	}{
		{"a second before valid_after", after.Add(-time.Second), ErrNotYetValid,
			"license TRI-2026-0001 is not valid before 2026-01-01 00:00:00 UTC"},
		{"a nanosecond before valid_after", after.Add(-time.Nanosecond), ErrNotYetValid, "not valid before"},
		{"exactly valid_after", after, nil, ""},
		{"in the middle", after.Add(100 * 24 * time.Hour), nil, ""},
		{"exactly valid_until", until, nil, ""},
		{"late in the last second", until.Add(999 * time.Millisecond), nil, ""},
		{"a second after valid_until", until.Add(time.Second), ErrExpired,
			"license TRI-2026-0001 expired on 2027-01-01 23:59:59 UTC"},
		{"a year after", until.AddDate(1, 0, 0), ErrExpired, "expired on"},
		// 2027-01-02 00:30 in UTC+1 is 2027-01-01 23:30 UTC: still valid.
		{"other time zone, valid", time.Date(2027, 1, 2, 0, 30, 0, 0, time.FixedZone("CET", 3600)), nil, ""},
		{"other time zone, expired", time.Date(2027, 1, 1, 19, 0, 0, 0, time.FixedZone("EST", -5*3600)), ErrExpired, "expired on 2027-01-01 23:59:59 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDates(&b, tt.now)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("CheckDates(%v) = %v, want nil", tt.now, err)
				}
				return
			}
			wantErr(t, err, tt.kind, tt.want)
		})
	}
}
