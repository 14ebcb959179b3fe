package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and either returns a Config
// that Validate accepts and converts cleanly, or an error.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example, "")
	f.Add([]byte(secrets), "TOLLGATE_LISTEN=:0\nTOLLGATE_ERROR_STATUSES__MISSING_CREDENTIAL=400")
	for _, tt := range parseErrorTests {
		f.Add([]byte(tt.yaml), strings.Join(tt.env, "\n"))
	}
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		var environ []string
		if env != "" {
			environ = strings.Split(env, "\n")
		}
		c, err := Parse(data, environ)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a Config with its error %v", err)
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a Config nor an error")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a Config that Validate refuses: %v", err)
		}
		if c.StoreBackend().Kind == "" || c.LimiterBackend().Kind == "" {
			t.Fatalf("valid Config with no backend: store %q, limiter %q", c.Store, c.Limiter)
		}
		routes := 0
		for _, m := range c.Models {
			routes += len(m.patterns())
		}
		models := c.DomainModels()
		if len(models) != routes {
			t.Fatalf("DomainModels returned %d models for %d routes", len(models), routes)
		}
		for _, m := range models {
			if m.Method == "" || !strings.HasPrefix(m.Path, "/") || m.Timeout <= 0 {
				t.Fatalf("DomainModels: bad model %+v", m)
			}
		}
		if len(c.DomainPlans()) != len(c.Plans) {
			t.Fatal("DomainPlans lost plans")
		}
		_ = c.Profile()
	})
}
