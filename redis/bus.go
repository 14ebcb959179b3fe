package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Bus broadcasts "admin state changed" between replicas over Redis
// pub/sub: a revoked or rotated key, a grant, a plan. A replica that gets
// a message forgets its cached keys, so the change applies to its next
// request; when a subscription is (re)established every replica forgets
// too, since messages published while it was cut off are lost. Key caches
// keep a short TTL as the backstop.
type Bus struct {
	client  *goredis.Client
	channel string
}

// NewBus connects to url (redis://…) and broadcasts on channel.
func NewBus(ctx context.Context, url, channel string) (*Bus, error) {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	opts.DialTimeout = time.Second
	c := goredis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis: ping: %w", err)
	}
	return &Bus{client: c, channel: channel}, nil
}

// Publish tells every subscribed replica, this one included, that msg
// changed.
func (b *Bus) Publish(ctx context.Context, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := b.client.Publish(ctx, b.channel, msg).Err(); err != nil {
		return fmt.Errorf("redis: publish: %w", err)
	}
	return nil
}

// Subscribe calls f with every message until ctx ends, and with "" each
// time the subscription starts or resumes after a lost connection (the
// messages in between are gone: forget everything). It returns once
// subscribed; delivery runs in its own goroutine.
func (b *Bus) Subscribe(ctx context.Context, f func(msg string)) error {
	ps := b.client.Subscribe(ctx, b.channel)
	// Subscribe returns before the server confirms: wait for it, so a
	// Publish after Subscribe returns is seen.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := ps.Receive(sctx)
	cancel()
	if err != nil {
		ps.Close()
		return fmt.Errorf("redis: subscribe: %w", err)
	}
	go func() {
		defer ps.Close()
		for {
			m, err := ps.Receive(ctx)
			if ctx.Err() != nil {
				return
			}
			switch m := m.(type) {
			case *goredis.Subscription:
				if m.Kind == "subscribe" {
					f("") // resumed: what was published meanwhile is lost
				}
			case *goredis.Message:
				f(m.Payload)
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				// go-redis reconnects and resubscribes on the next
				// Receive; don't spin while Redis is down.
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}()
	return nil
}

// Close closes the connection pool.
func (b *Bus) Close() error { return b.client.Close() }
