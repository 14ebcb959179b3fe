package config

import (
	"errors"
	"sort"
	"strings"
)

// A fieldError is one problem at one location.
type fieldError struct {
	// Field is the location: "listen", "models[2].route",
	// "TOLLGATE_LEASE_TTL".
	Field string
	Err   error
}

func (e *fieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *fieldError) Unwrap() error { return e.Err }

// join sorts errs by location, indexes in numeric order (models[2] before
// models[10]), so each item's problems read together, and joins them.
func join(errs []*fieldError) error {
	sort.SliceStable(errs, func(i, j int) bool { return naturalLess(errs[i].Field, errs[j].Field) })
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// naturalLess compares a and b with runs of digits compared as numbers.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

// digits returns the length of the run of ASCII digits starting s.
func digits(s string) int {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	return n
}
