package tollgate_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

func TestKeyGenerateCheck(t *testing.T) {
	for _, f := range []tollgate.KeyFormat{{}, {Prefix: "origin_sk_"}} {
		seen := map[string]bool{}
		for i := 0; i < 200; i++ {
			k, err := f.Generate(nil)
			if err != nil {
				t.Fatal(err)
			}
			prefix := f.Prefix
			if prefix == "" {
				prefix = tollgate.DefaultKeyPrefix
			}
			if !strings.HasPrefix(k, prefix) || len(k) != len(prefix)+32+6 {
				t.Fatalf("key %q: wrong shape", k)
			}
			if err := f.Check(k); err != nil {
				t.Fatalf("Check(%q) = %v", k, err)
			}
			if seen[k] {
				t.Fatalf("duplicate key %q", k)
			}
			seen[k] = true
			if got := f.DisplayPrefix(k); got != k[:len(prefix)+4] {
				t.Errorf("DisplayPrefix = %q", got)
			}
		}
	}
}

func TestKeyCheckRefuses(t *testing.T) {
	f := tollgate.KeyFormat{}
	good, _ := f.Generate(nil)
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for name, k := range map[string]string{
		"empty":          "",
		"prefix only":    "tg_live_",
		"typo in body":   flip(10),
		"typo in sum":    flip(len(good) - 1),
		"wrong prefix":   "tg_test_" + good[8:],
		"truncated":      good[:len(good)-1],
		"extra":          good + "a",
		"non-base62":     good[:12] + "-" + good[13:],
		"other format":   "sk-" + strings.Repeat("a", 48),
		"other prefixed": tollgate.KeyFormat{Prefix: "origin_sk_"}.Check(good).Error(),
	} {
		if err := f.Check(k); err == nil {
			t.Errorf("%s: Check(%q) accepted", name, k)
		}
	}
}

func TestKeyHasher(t *testing.T) {
	h1 := tollgate.NewKeyHasher([]byte("0123456789abcdef"))
	h2 := tollgate.NewKeyHasher([]byte("fedcba9876543210"))
	a, b := h1.Hash("tg_live_x"), h2.Hash("tg_live_x")
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Fatalf("hash must be 32 bytes and depend on the secret")
	}
	if !h1.Equal(a, h1.Hash("tg_live_x")) || h1.Equal(a, b) {
		t.Error("Equal wrong")
	}
}

func TestKeyActive(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		k    tollgate.Key
		want bool
	}{
		{tollgate.Key{}, true},
		{tollgate.Key{ExpiresAt: now.Add(time.Second)}, true},
		{tollgate.Key{ExpiresAt: now}, false},
		{tollgate.Key{RevokedAt: now.Add(-time.Second)}, false},
		{tollgate.Key{RevokedAt: now.Add(time.Hour)}, true},
	}
	for i, tt := range tests {
		if got := tt.k.Active(now); got != tt.want {
			t.Errorf("%d: Active = %v, want %v", i, got, tt.want)
		}
	}
	k := tollgate.Key{Models: []string{"a"}}
	if !k.AllowsModel("a") || k.AllowsModel("b") || !(&tollgate.Key{}).AllowsModel("b") {
		t.Error("AllowsModel wrong")
	}
}

func FuzzKeyCheck(f *testing.F) {
	good, _ := tollgate.KeyFormat{}.Generate(nil)
	for _, s := range []string{"", good, good[:20], "tg_live_" + strings.Repeat("0", 38), "Bearer " + good} {
		f.Add(s)
	}
	format := tollgate.KeyFormat{}
	f.Fuzz(func(t *testing.T, s string) {
		err := format.Check(s)
		if err == nil && (len(s) != len(good) || !strings.HasPrefix(s, "tg_live_")) {
			t.Fatalf("accepted malformed %q", s)
		}
	})
}

func BenchmarkKeyVerify(b *testing.B) {
	f := tollgate.KeyFormat{}
	h := tollgate.NewKeyHasher([]byte("0123456789abcdef0123456789abcdef"))
	k, _ := f.Generate(nil)
	want := h.Hash(k)
	var got [tollgate.KeyHashSize]byte
	b.ReportAllocs()
	for b.Loop() {
		if f.Check(k) != nil {
			b.Fatal("checksum failed")
		}
		h.HashTo(&got, k)
		if !h.Equal(got[:], want) {
			b.Fatal("verify failed")
		}
	}
}

func TestKeyScheme(t *testing.T) {
	if got := (&tollgate.Key{}).Scheme(); got != tollgate.HashHMAC {
		t.Errorf("zero Scheme() = %q, want %q", got, tollgate.HashHMAC)
	}
	if got := (&tollgate.Key{HashScheme: tollgate.HashSHA256}).Scheme(); got != tollgate.HashSHA256 {
		t.Errorf("Scheme() = %q", got)
	}
	for s, want := range map[tollgate.HashScheme]bool{"hmac-sha256": true, "sha256": true, "": false, "md5": false} {
		if tollgate.ValidHashScheme(s) != want {
			t.Errorf("ValidHashScheme(%q) = %v", s, !want)
		}
	}
	// SHA256Key is the plain SHA-256 of the key (`printf %s KEY | sha256sum`).
	const want = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if got := fmt.Sprintf("%x", tollgate.SHA256Key("hello")); got != want {
		t.Errorf("SHA256Key(hello) = %s, want %s", got, want)
	}
}
