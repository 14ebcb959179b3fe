package tollgate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"time"
)

// DefaultKeyPrefix starts every key tollgate issues unless a deployment sets
// its own (KeyFormat.Prefix).
const DefaultKeyPrefix = "tg_live_"

const (
	keyRandomLen   = 32
	keyChecksumLen = 6
	base62         = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// ErrMalformedKey is returned by KeyFormat.Check for a string that is not a
// well-formed key; it is never a store lookup's answer.
var ErrMalformedKey = errors.New("malformed key")

// KeyFormat generates and checks plaintext keys: Prefix + 32 random base62
// characters + a 6-character base62 CRC32 of prefix and random part
// (GitHub-token style: typos and random strings are refused offline and
// secret scanners can find leaked keys). The zero value uses DefaultKeyPrefix.
type KeyFormat struct {
	Prefix string
}

func (f KeyFormat) prefix() string {
	if f.Prefix == "" {
		return DefaultKeyPrefix
	}
	return f.Prefix
}

// Generate returns a new plaintext key read from r (crypto/rand when nil).
func (f KeyFormat) Generate(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	p := f.prefix()
	b := make([]byte, 0, len(p)+keyRandomLen+keyChecksumLen)
	b = append(b, p...)
	var buf [keyRandomLen]byte
	for n := 0; n < keyRandomLen; {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", err
		}
		for _, c := range buf {
			// 248 = 4*62: reject the tail so every character is uniform.
			if c >= 248 || n == keyRandomLen {
				continue
			}
			b = append(b, base62[c%62])
			n++
		}
	}
	b = appendChecksum(b, crc32.ChecksumIEEE(b))
	return string(b), nil
}

func appendChecksum(b []byte, sum uint32) []byte {
	var c [keyChecksumLen]byte
	for i := keyChecksumLen - 1; i >= 0; i-- {
		c[i] = base62[sum%62]
		sum /= 62
	}
	return append(b, c[:]...)
}

// Check verifies the shape and checksum of s without any lookup.
func (f KeyFormat) Check(s string) error {
	p := f.prefix()
	if len(s) != len(p)+keyRandomLen+keyChecksumLen || !strings.HasPrefix(s, p) {
		return ErrMalformedKey
	}
	body := s[len(p):]
	for i := 0; i < len(body); i++ {
		if !isBase62(body[i]) {
			return ErrMalformedKey
		}
	}
	cut := len(s) - keyChecksumLen
	var want [keyChecksumLen]byte
	appendChecksum(want[:0], crc32.ChecksumIEEE([]byte(s[:cut])))
	if subtle.ConstantTimeCompare(want[:], []byte(s[cut:])) != 1 {
		return ErrMalformedKey
	}
	return nil
}

// DisplayPrefix is the part of a key that may be shown after creation
// (prefix + first 4 random characters).
func (f KeyFormat) DisplayPrefix(s string) string {
	n := len(f.prefix()) + 4
	if len(s) < n {
		return s
	}
	return s[:n]
}

func isBase62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// KeyHasher hashes plaintext keys with HMAC-SHA-256 under a server secret;
// only the hash is stored. It is safe for concurrent use.
type KeyHasher struct {
	secret []byte
}

// NewKeyHasher returns a hasher for secret (at least 16 bytes recommended).
func NewKeyHasher(secret []byte) *KeyHasher {
	return &KeyHasher{secret: append([]byte(nil), secret...)}
}

// Hash returns HMAC-SHA-256(secret, key).
func (h *KeyHasher) Hash(key string) []byte {
	m := hmac.New(sha256.New, h.secret)
	io.WriteString(m, key)
	return m.Sum(nil)
}

// Equal compares two hashes in constant time.
func (h *KeyHasher) Equal(a, b []byte) bool { return hmac.Equal(a, b) }

// Key is an API key's stored record. The plaintext is never stored.
// Settings (org, models, RPM, expiry, scopes) are fixed at creation.
type Key struct {
	ID     string
	OrgID  string
	Name   string
	Prefix string // display prefix, e.g. "tg_live_Ab3x"
	Hash   []byte
	// Models restricts the key to these model ids; empty means every model
	// the org is granted.
	Models []string
	// RPM is the key's requests-per-minute limit; 0 means the plan's.
	RPM       int
	Scopes    []string
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: not revoked
	CreatedAt time.Time
}

// Active reports whether k may authenticate at now.
func (k *Key) Active(now time.Time) bool {
	if !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt) {
		return false
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return false
	}
	return true
}

// AllowsModel reports whether the key's own model list admits model.
func (k *Key) AllowsModel(model string) bool {
	if len(k.Models) == 0 {
		return true
	}
	for _, m := range k.Models {
		if m == model {
			return true
		}
	}
	return false
}
