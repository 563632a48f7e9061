package license

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFeatureSpec(t *testing.T) {
	tests := []struct {
		spec string
		want Feature
		err  string
	}{
		{"cad:5:10", Feature{Name: "cad", Version: 5, Count: 10, Model: ModelConcurrent, Limit: LimitHard}, ""},
		{" cad.render : 0 : 1 ", Feature{Name: "cad.render", Version: 0, Count: 1, Model: ModelConcurrent, Limit: LimitHard}, ""},
		{"x:4294967295:4294967295", Feature{Name: "x", Version: 4294967295, Count: 4294967295, Model: ModelConcurrent, Limit: LimitHard}, ""},
		{"cad:5", Feature{}, `feature "cad:5" must be name:version:count`},
		{"cad:5:10:2", Feature{}, "must be name:version:count"},
		{"", Feature{}, "must be name:version:count"},
		{":5:10", Feature{}, "must be 1 to 64 characters"},
		{"c d:5:10", Feature{}, "may contain only letters"},
		{"cad:v5:10", Feature{}, `version "v5": the major component "v5" is not a whole number`},
		{"cad:-1:10", Feature{}, "version"},
		{"cad:4294967296:10", Feature{}, "version"},
		{"cad:5:0", Feature{}, `count "0" must be a whole number from 1`},
		{"cad:5:ten", Feature{}, `count "ten"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseFeatureSpec(tt.spec)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseFeatureSpec(%q) = %+v, %v; want error containing %q", tt.spec, got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseFeatureSpec(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
			}
		})
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in         string
		end, start time.Time // zero means an error is expected
	}{
		{"2027-01-01", time.Date(2027, 1, 1, 23, 59, 59, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{" 2028-02-29 ", time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC), time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"2027-06-30T12:00:00.5+02:00", time.Date(2027, 6, 30, 10, 0, 0, 0, time.UTC), time.Date(2027, 6, 30, 10, 0, 0, 0, time.UTC)},
		{"2027-02-29", time.Time{}, time.Time{}},
		{"2027-1-1", time.Time{}, time.Time{}},
		{"01/01/2027", time.Time{}, time.Time{}},
		{"", time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			end, err1 := ParseDate(tt.in)
			start, err2 := ParseStartDate(tt.in)
			if tt.end.IsZero() {
				for _, err := range []error{err1, err2} {
					if err == nil || !strings.Contains(err.Error(), "must be YYYY-MM-DD") {
						t.Errorf("error = %v, want one asking for YYYY-MM-DD", err)
					}
				}
				return
			}
			if err1 != nil || !end.Equal(tt.end) || end.Location() != time.UTC {
				t.Errorf("ParseDate = %v, %v; want %v", end, err1, tt.end)
			}
			if err2 != nil || !start.Equal(tt.start) || start.Location() != time.UTC {
				t.Errorf("ParseStartDate = %v, %v; want %v", start, err2, tt.start)
			}
		})
	}
}
