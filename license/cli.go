package license

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseFeatureSpec reads a command-line feature "name:version:count", for
// example "cad:5:10". The other fields get their defaults (concurrent model,
// hard limit, default grace, no borrowing); the caller may set them after.
func ParseFeatureSpec(spec string) (Feature, error) {
	parts := strings.Split(strings.TrimSpace(spec), ":")
	if len(parts) != 3 {
		return Feature{}, fmt.Errorf("feature %q must be name:version:count, for example cad:5:10", spec)
	}
	name := strings.TrimSpace(parts[0])
	if err := checkFeatureName(name); err != nil {
		return Feature{}, fmt.Errorf("feature %q: %w", spec, err)
	}
	version, err := strconv.ParseUint(strings.TrimSpace(parts[1]), 10, 32)
	if err != nil {
		return Feature{}, fmt.Errorf("feature %q: version %q must be a whole number from 0 to 4294967295", spec, parts[1])
	}
	count, err := strconv.ParseUint(strings.TrimSpace(parts[2]), 10, 32)
	if err != nil || count < 1 {
		return Feature{}, fmt.Errorf("feature %q: count %q must be a whole number from 1 to 4294967295", spec, parts[2])
	}
	return Feature{Name: name, Version: uint32(version), Count: uint32(count), Model: ModelConcurrent, Limit: LimitHard}, nil
}

// ParseDate reads a command-line date for valid-until: "YYYY-MM-DD" means the
// END of that day in UTC (23:59:59), so "--valid-until 2027-01-01" includes
// the whole of New Year's Day. A full RFC 3339 time is used as given.
func ParseDate(s string) (time.Time, error) {
	day, exact, err := parseDay(s)
	if err != nil || exact {
		return day, err
	}
	return day.Add(24*time.Hour - time.Second), nil
}

// ParseStartDate is ParseDate for valid-after: "YYYY-MM-DD" means the START
// of that day in UTC (00:00:00).
func ParseStartDate(s string) (time.Time, error) {
	day, _, err := parseDay(s)
	return day, err
}

func parseDay(s string) (t time.Time, exact bool, err error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, false, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return normTime(t), true, nil
	}
	return time.Time{}, false, fmt.Errorf("date %q must be YYYY-MM-DD (or an RFC 3339 time such as 2027-01-01T12:00:00Z)", s)
}
