package inmem

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/limitertest"
)

func TestAdmit(t *testing.T) {
	t.Run("Fresh", func(t *testing.T) {
		limitertest.RunAdmit(t, limitertest.AdmitOptions{
			New:      func(*testing.T) tollgate.Admitter { return NewLimiter(0) },
			LeaseTTL: DefaultLeaseTTL,
		})
	})
	t.Run("Shared", func(t *testing.T) {
		shared := NewLimiter(3 * time.Second)
		limitertest.RunAdmit(t, limitertest.AdmitOptions{
			New:      func(*testing.T) tollgate.Admitter { return shared },
			LeaseTTL: 3 * time.Second,
		})
	})
}
