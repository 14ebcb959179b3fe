package tollgate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"strings"
	"sync"
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
	appendChecksum(want[:0], checksum(s[:cut]))
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

// checksum is crc32.ChecksumIEEE of s, computed over the string so the
// hot path does not copy the key to the heap.
func checksum(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

func isBase62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// KeyHasher hashes plaintext keys with HMAC-SHA-256 under a server secret;
// only the hash is stored. It is safe for concurrent use.
type KeyHasher struct {
	secret []byte
	pool   sync.Pool // of hash.Hash keyed with secret
}

// KeyHashSize is the length of a key hash.
const KeyHashSize = sha256.Size

// NewKeyHasher returns a hasher for secret (at least 16 bytes recommended).
func NewKeyHasher(secret []byte) *KeyHasher {
	h := &KeyHasher{secret: append([]byte(nil), secret...)}
	h.pool.New = func() any { return &keyMAC{h: hmac.New(sha256.New, h.secret)} }
	return h
}

// Hash returns HMAC-SHA-256(secret, key).
func (h *KeyHasher) Hash(key string) []byte {
	var sum [KeyHashSize]byte
	h.HashTo(&sum, key)
	return sum[:]
}

// HashTo writes HMAC-SHA-256(secret, key) to dst without allocating.
func (h *KeyHasher) HashTo(dst *[KeyHashSize]byte, key string) {
	m := h.pool.Get().(*keyMAC)
	m.h.Reset()
	m.buf = append(m.buf[:0], key...)
	m.h.Write(m.buf)
	m.sum = m.h.Sum(m.sum[:0])
	copy(dst[:], m.sum)
	h.pool.Put(m)
}

// keyMAC is a pooled HMAC with its buffers, so hashing allocates nothing.
type keyMAC struct {
	h        hash.Hash
	buf, sum []byte
}

// Equal compares two hashes in constant time.
func (h *KeyHasher) Equal(a, b []byte) bool { return hmac.Equal(a, b) }

// HashScheme says how a stored key hash was computed.
type HashScheme string

// The hash schemes. Every key tollgate issues is HashHMAC; HashSHA256 holds
// keys imported from another API as the plain SHA-256 it stored.
const (
	// HashHMAC is HMAC-SHA-256 under the deployment's key secret
	// (KeyHasher). A Key's zero HashScheme means this.
	HashHMAC HashScheme = "hmac-sha256"
	// HashSHA256 is the SHA-256 of the key, unkeyed (SHA256Key).
	HashSHA256 HashScheme = "sha256"
)

// ValidHashScheme reports whether s names a hash scheme.
func ValidHashScheme(s HashScheme) bool { return s == HashHMAC || s == HashSHA256 }

// SHA256Key returns the unkeyed SHA-256 of key: how an imported key stored
// under HashSHA256 is found.
func SHA256Key(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// Key is an API key's stored record. The plaintext is never stored.
// Settings (org, models, RPM, expiry, scopes) are fixed at creation.
type Key struct {
	ID     string
	OrgID  string
	Name   string
	Prefix string // display prefix, e.g. "tg_live_Ab3x"
	Hash   []byte
	// HashScheme is how Hash was computed; the zero value is HashHMAC.
	// Only imported keys are HashSHA256.
	HashScheme HashScheme
	// NoChecksum marks an imported key that does not carry tollgate's
	// checksum (another API's key, or one of an earlier key_prefix): it
	// cannot be refused offline, so authentication looks up strings that
	// fail KeyFormat.Check while the deployment holds such keys.
	NoChecksum bool
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

// Scheme returns k's hash scheme, HashHMAC for the zero value.
func (k *Key) Scheme() HashScheme {
	if k.HashScheme == "" {
		return HashHMAC
	}
	return k.HashScheme
}

// ImportedKeys counts the keys, active at a given time, that authentication
// cannot resolve with one HMAC lookup after the offline check: while both
// are 0 it never does more.
type ImportedKeys struct {
	// NoChecksum counts keys without tollgate's checksum.
	NoChecksum int
	// SHA256 counts keys stored as HashSHA256.
	SHA256 int
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
