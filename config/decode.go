package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// covered reports whether field is at or under a location that failed to
// decode, or is a block holding one (a block with a bad value in it is
// left out whole, so whatever is said of its absence is wrong too).
func covered(field string, decodeErrs []*fieldError) bool {
	under := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(a, b+"[")
	}
	for _, d := range decodeErrs {
		if d.Field == "" {
			continue
		}
		if under(field, d.Field) || under(d.Field, field) {
			return true
		}
	}
	return false
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes "30s"-style strings into time.Duration and refuses
// bare numbers, which would silently mean nanoseconds.
func durationHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"1m30s\")", v)
		}
		return d, nil
	case time.Duration:
		return v, nil
	case int, int64, uint64, float64:
		return nil, fmt.Errorf("duration %v has no unit (want e.g. \"%vs\")", v, v)
	}
	return data, nil
}

// flattenDecodeError appends to out one fieldError per problem in
// mapstructure's tree of errors. An unknown key is an error of its own,
// located at the key.
func flattenDecodeError(err error, out []*fieldError) []*fieldError {
	var de *mapstructure.DecodeError
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			out = flattenDecodeError(inner, out)
		}
		return out
	case *mapstructure.DecodeError:
		de = e
	default:
		// Decode wraps the whole tree once ("decoding failed due to...").
		if errors.As(err, &de) {
			return flattenDecodeError(errors.Unwrap(err), out)
		}
		return append(out, &fieldError{Err: err})
	}
	name, inner := de.Name(), de.Unwrap()
	if inner == nil {
		return append(out, &fieldError{Field: name, Err: errors.New("invalid value")})
	}
	var nested *mapstructure.DecodeError
	if errors.As(inner, &nested) {
		return flattenDecodeError(inner, out)
	}
	if keys, ok := strings.CutPrefix(inner.Error(), "has invalid keys: "); ok {
		for _, key := range strings.Split(keys, ", ") {
			if name != "" {
				key = name + "." + key
			}
			out = append(out, &fieldError{Field: key, Err: errors.New("unknown key")})
		}
		return out
	}
	var ut *mapstructure.UnconvertibleTypeError
	if errors.As(inner, &ut) {
		// Values are left out: this may be a secret in the wrong type.
		inner = fmt.Errorf("want %s, got %s", typeName(ut.Expected.Type()), typeName(reflect.TypeOf(ut.Value)))
	}
	return append(out, &fieldError{Field: name, Err: inner})
}

// typeName names t the way YAML users think of it.
func typeName(t reflect.Type) string {
	if t == nil {
		return "null"
	}
	if t == durationType {
		return "a duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a map"
	}
	return t.String()
}
