package httpapi

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Key import: API keys that existed before tollgate (another API's
// customers keep theirs), given as plaintext or as the hash the old API
// stored, with their settings. See authenticate for how they are found.

// MaxKeyImport is the most keys one import call takes (all or none).
const MaxKeyImport = 1000

// KeyImport is one existing key to import: its settings (KeyRequest's
// fields) and either the plaintext Key or its Hash with the Scheme it was
// computed with.
type KeyImport struct {
	KeyRequest
	// Key is the plaintext: stored as its HMAC under the key secret, like
	// a key tollgate issues. Whether it carries tollgate's checksum (under
	// this deployment's key_prefix) is read from the key itself.
	Key string `json:"key,omitempty"`
	// Hash is the hex of the key's hash in Scheme: "sha256" (the plain
	// SHA-256 the old API stored) or "hmac-sha256" (HMAC-SHA-256 under
	// this deployment's key secret).
	Hash   string `json:"hash,omitempty"`
	Scheme string `json:"scheme,omitempty"`
	// Prefix is what the admin API shows of a hash-imported key (at most
	// 32 printable characters; a plaintext key's is taken from it).
	Prefix string `json:"prefix,omitempty"`
	// Checksum says a hash-imported key carries tollgate's checksum under
	// this deployment's key_prefix. Default false: the key is accepted
	// whatever its format, at the cost of a store lookup for strings that
	// fail the offline check (see authenticate).
	Checksum bool `json:"checksum,omitempty"`
	// CreatedAt keeps the key's original creation time (default: now).
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

func (s *Server) importKeys(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Keys []KeyImport `json:"keys"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	keys, err := s.ImportKeys(r.Context(), r.PathValue("id"), in.Keys)
	if err != nil {
		return err
	}
	s.changed(r.Context())
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, s.toKeyJSON(k))
	}
	writeJSON(w, http.StatusCreated, map[string]any{"keys": out})
	return nil
}

// ImportKeys validates the keys against the org's plan and the models
// (every problem at once) and stores them in one transaction: all or none.
// It returns the stored records; nothing of a key is ever returned but its
// display prefix.
func (s *Server) ImportKeys(ctx context.Context, orgID string, in []KeyImport) ([]*tollgate.Key, error) {
	org, err := s.Store.Org(ctx, orgID)
	if err != nil {
		return nil, err
	}
	plan, err := s.Store.Plan(ctx, org.PlanID)
	if err != nil {
		return nil, err
	}
	var fe fieldErrors
	switch {
	case len(in) == 0:
		fe.add("keys", "is required: a list of keys to import")
	case len(in) > MaxKeyImport:
		fe.add("keys", fmt.Sprintf("%d keys: at most %d per call", len(in), MaxKeyImport))
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	keys := make([]*tollgate.Key, 0, len(in))
	for i := range in {
		if k := s.importedKey(&in[i], org, plan, now, fmt.Sprintf("keys[%d].", i), &fe); k != nil {
			keys = append(keys, k)
		}
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	if err := s.Store.ImportKeys(ctx, keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// importedKey validates one entry and returns its record, or nil with the
// problems added to fe.
func (s *Server) importedKey(in *KeyImport, org *tollgate.Org, plan *tollgate.Plan, now time.Time, at string, fe *fieldErrors) *tollgate.Key {
	before := len(*fe)
	expires := s.checkKeySettings(&in.KeyRequest, plan, now, at, fe)
	k := &tollgate.Key{ID: newID("key_"), OrgID: org.ID, Name: in.Name, Models: in.Models, RPM: in.RPM,
		Scopes: in.Scopes, ExpiresAt: expires, CreatedAt: now}
	if in.CreatedAt != nil {
		switch c := in.CreatedAt.UTC(); {
		case c.IsZero() || c.After(now):
			fe.add(at+"created_at", "must be a time in the past")
		default:
			k.CreatedAt = c
		}
	}
	switch {
	case in.Key != "" && in.Hash != "":
		fe.add(at+"key", "give key or hash, not both")
	case in.Key != "":
		if !plausibleKey(in.Key) {
			fe.add(at+"key", fmt.Sprintf("must be %d to %d printable ASCII characters without spaces", MinImportedKeyLen, MaxImportedKeyLen))
			break
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"scheme", in.Scheme != ""}, {"prefix", in.Prefix != ""}, {"checksum", in.Checksum}} {
			if f.set {
				fe.add(at+f.name, "only with hash (a plaintext key's is read from the key)")
			}
		}
		k.Hash = s.Hasher.Hash(in.Key)
		k.NoChecksum = s.Keys.Check(in.Key) != nil
		k.Prefix = importedPrefix(s.Keys, in.Key)
	case in.Hash != "":
		scheme := tollgate.HashScheme(in.Scheme)
		if !tollgate.ValidHashScheme(scheme) {
			fe.add(at+"scheme", fmt.Sprintf("%q: want %s or %s", in.Scheme, tollgate.HashSHA256, tollgate.HashHMAC))
		}
		h, err := hex.DecodeString(in.Hash)
		if err != nil || len(h) != tollgate.KeyHashSize {
			fe.add(at+"hash", fmt.Sprintf("must be %d hexadecimal characters (a SHA-256 or HMAC-SHA-256)", 2*tollgate.KeyHashSize))
		}
		if len(in.Prefix) > 32 || strings.IndexFunc(in.Prefix, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			fe.add(at+"prefix", "at most 32 printable ASCII characters without spaces")
		}
		k.Hash, k.HashScheme, k.NoChecksum, k.Prefix = h, scheme, !in.Checksum, in.Prefix
		if scheme == tollgate.HashHMAC {
			k.HashScheme = "" // the zero value, as tollgate's own keys
		}
	default:
		fe.add(at+"key", "give the plaintext key, or its hash and scheme")
	}
	if len(*fe) > before {
		return nil
	}
	return k
}

// importedPrefix is what the admin API shows of an imported plaintext key:
// with this deployment's key prefix, as for its own keys (prefix and 4
// characters); otherwise its first 8 characters, never more than a
// quarter of it.
func importedPrefix(f tollgate.KeyFormat, key string) string {
	if p := f.DisplayPrefix(key); len(p) < len(key)/2 && strings.HasPrefix(key, keyPrefix(f)) {
		return p
	}
	return key[:min(8, len(key)/4)]
}

// keyPrefix is f's prefix (its zero value's included).
func keyPrefix(f tollgate.KeyFormat) string {
	if f.Prefix == "" {
		return tollgate.DefaultKeyPrefix
	}
	return f.Prefix
}
