package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// keyJSON is a key as the admin API shows it: never the key itself, except
// the Secret field once, in the answer to create and rotate.
type keyJSON struct {
	ID         string     `json:"id"`
	Secret     string     `json:"key,omitempty"`
	Prefix     string     `json:"prefix"`
	Name       string     `json:"name"`
	Org        string     `json:"org"`
	Models     []string   `json:"models"`
	RPM        int        `json:"rpm"`
	Scopes     []string   `json:"scopes"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	CreatedAt  time.Time  `json:"created_at"`
	Active     bool       `json:"active"`
	ReplacedBy string     `json:"replaced_by,omitempty"`
	// HashScheme and Checksum tell imported keys from tollgate's own
	// (hmac-sha256, true).
	HashScheme tollgate.HashScheme `json:"hash_scheme"`
	Checksum   bool                `json:"checksum"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) toKeyJSON(k *tollgate.Key) keyJSON {
	models, scopes := k.Models, k.Scopes
	if models == nil {
		models = []string{}
	}
	if scopes == nil {
		scopes = []string{}
	}
	return keyJSON{ID: k.ID, Prefix: k.Prefix, Name: k.Name, Org: k.OrgID, Models: models, RPM: k.RPM,
		Scopes: scopes, ExpiresAt: optTime(k.ExpiresAt), RevokedAt: optTime(k.RevokedAt),
		CreatedAt: k.CreatedAt.UTC(), Active: k.Active(s.now()), HashScheme: k.Scheme(), Checksum: !k.NoChecksum}
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.Store.Org(r.Context(), id); err != nil {
		return err
	}
	keys, err := s.Store.Keys(r.Context(), id)
	if err != nil {
		return err
	}
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, s.toKeyJSON(k))
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
	return nil
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.Store.Key(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.toKeyJSON(k))
	return nil
}

// KeyRequest holds a new key's settings, fixed at creation.
type KeyRequest struct {
	Name      string     `json:"name"`
	Models    []string   `json:"models"`
	RPM       int        `json:"rpm"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at"`
	ExpiresIn string     `json:"expires_in"`
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var in KeyRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	k, secret, err := s.CreateKey(r.Context(), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	out := s.toKeyJSON(k)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// CreateKey validates settings against the org's plan and the models,
// stores the key and returns its record and plaintext (shown once).
func (s *Server) CreateKey(ctx context.Context, orgID string, in KeyRequest) (*tollgate.Key, string, error) {
	org, err := s.Store.Org(ctx, orgID)
	if err != nil {
		return nil, "", err
	}
	plan, err := s.Store.Plan(ctx, org.PlanID)
	if err != nil {
		return nil, "", err
	}
	now := s.now().UTC()
	var fe fieldErrors
	expires := s.checkKeySettings(&in, plan, now, "", &fe)
	if err := fe.err(); err != nil {
		return nil, "", err
	}
	secret, err := s.Keys.Generate(nil)
	if err != nil {
		return nil, "", fmt.Errorf("generate key: %w", err)
	}
	k := &tollgate.Key{
		ID: newID("key_"), OrgID: org.ID, Name: in.Name, Prefix: s.Keys.DisplayPrefix(secret),
		Hash: s.Hasher.Hash(secret), Models: in.Models, RPM: in.RPM, Scopes: in.Scopes,
		ExpiresAt: expires, CreatedAt: now,
	}
	if err := s.Store.CreateKey(ctx, k); err != nil {
		return nil, "", err
	}
	return k, secret, nil
}

// checkKeySettings validates a key's settings against plan and the models,
// adding problems to fe with at (a field name prefix such as "keys[2].");
// it trims in.Name and returns the expiry (zero: never).
func (s *Server) checkKeySettings(in *KeyRequest, plan *tollgate.Plan, now time.Time, at string, fe *fieldErrors) time.Time {
	in.Name = strings.TrimSpace(in.Name)
	if !validName(in.Name) {
		fe.add(at+"name", nameRule)
	}
	for _, m := range in.Models {
		if _, ok := s.models[m]; !ok {
			fe.add(at+"models", fmt.Sprintf("unknown model %q", m))
		}
	}
	if in.RPM < 0 {
		fe.add(at+"rpm", "must be >= 0 (0 = the plan's limit)")
	} else if in.RPM > plan.RPM {
		fe.add(at+"rpm", fmt.Sprintf("%d is above the plan's limit of %d requests per minute", in.RPM, plan.RPM))
	}
	var expires time.Time
	switch {
	case in.ExpiresAt != nil && in.ExpiresIn != "":
		fe.add(at+"expires_in", "give expires_at or expires_in, not both")
	case in.ExpiresAt != nil:
		expires = in.ExpiresAt.UTC()
	case in.ExpiresIn != "":
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d <= 0 {
			fe.add(at+"expires_in", "must be a positive duration such as 720h")
		} else {
			expires = now.Add(d)
		}
	}
	if !expires.IsZero() && !expires.After(now) {
		fe.add(at+"expires_at", "must be in the future")
	}
	for _, sc := range in.Scopes {
		if !idPattern.MatchString(sc) {
			fe.add(at+"scopes", fmt.Sprintf("invalid scope %q", sc))
		}
	}
	return expires
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.Store.RevokeKey(r.Context(), id, s.now().UTC()); err != nil {
		return err
	}
	s.changed(r.Context())
	return s.getKey(w, r)
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Overlap string `json:"overlap"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return err
		}
	}
	overlap := 24 * time.Hour
	if in.Overlap != "" {
		d, err := time.ParseDuration(in.Overlap)
		if err != nil || d < 0 {
			return invalid("overlap", "must be a duration >= 0 such as 24h")
		}
		overlap = d
	}
	ctx := r.Context()
	old, err := s.Store.Key(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	now := s.now().UTC()
	if !old.Active(now) {
		return tollgate.Errorf(tollgate.CodeConflict, "Key %s is revoked or expired; create a new key instead.", old.ID)
	}
	secret, err := s.Keys.Generate(nil)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	next := &tollgate.Key{
		ID: newID("key_"), OrgID: old.OrgID, Name: old.Name, Prefix: s.Keys.DisplayPrefix(secret),
		Hash: s.Hasher.Hash(secret), Models: old.Models, RPM: old.RPM, Scopes: old.Scopes,
		ExpiresAt: old.ExpiresAt, CreatedAt: now,
	}
	if err := s.Store.RotateKey(ctx, old.ID, next, now.Add(overlap)); err != nil {
		return err
	}
	s.changed(r.Context())
	prev, err := s.Store.Key(ctx, old.ID)
	if err != nil {
		return err
	}
	out := s.toKeyJSON(next)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, map[string]any{"key": out, "previous": s.toKeyJSON(prev)})
	return nil
}
