package redis

import (
	"context"
	"os"
	"testing"
	"time"
)

func busURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("TOLLGATE_TEST_REDIS")
	if u == "" {
		t.Skip("TOLLGATE_TEST_REDIS not set: the Redis tests need a real Redis (e.g. redis://127.0.0.1:6379/0); .ci/run sets it")
	}
	return u
}

// TestBusDelivers: a message published on one bus reaches another bus's
// subscriber on the same channel, and not one on another channel.
func TestBusDelivers(t *testing.T) {
	url := busURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	channel := "tg:test:bus:" + time.Now().Format("150405.000000000")
	pub, err := NewBus(ctx, url, channel)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := NewBus(ctx, url, channel)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	other, err := NewBus(ctx, url, channel+":other")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	got := make(chan string, 10)
	if err := sub.Subscribe(ctx, func(m string) { got <- m }); err != nil {
		t.Fatal(err)
	}
	stray := make(chan string, 10)
	if err := other.Subscribe(ctx, func(m string) { stray <- m }); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Second)
	for {
		select {
		case m := <-got:
			if m == "" {
				continue // the (re)subscribe signal
			}
			if m != "keys" {
				t.Fatalf("got %q, want keys", m)
			}
			select {
			case m := <-stray:
				if m != "" {
					t.Errorf("other channel got %q", m)
				}
			case <-time.After(50 * time.Millisecond):
			}
			return
		case <-deadline:
			t.Fatal("no message within 1 s")
		}
	}
}

func TestBusRefusesUnreachable(t *testing.T) {
	if _, err := NewBus(context.Background(), "redis://127.0.0.1:1/0", "x"); err == nil {
		t.Fatal("NewBus to a closed port succeeded")
	}
}
