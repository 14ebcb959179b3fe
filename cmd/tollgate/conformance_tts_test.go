package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// TestConformanceTTS walks seed 003 (the text-to-speech API's error
// response format) against examples/tts, including its origin_sk_ keys
// and the import of keys the API issued before tollgate.
// missingOrInvalid is 003's one message for a missing or an invalid key.
const missingOrInvalid = "Missing or invalid API key. Include 'Authorization: Bearer origin_sk_...' header."

func TestConformanceTTS(t *testing.T) {
	e := startExample(t, "tts", nil)
	_, key, _ := e.newOrg("indie", "free", []string{"tts", "tts-demo", "voice-clone"}, nil)
	numeric := map[string]string{"error": jsonString, "code": jsonNumber}
	withRetry := map[string]string{"error": jsonString, "code": jsonNumber, "retry_after": jsonNumber}
	bearer := func(k string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + k, "Content-Type": "application/json"}
	}
	speak := func(k, path, text string) response {
		t.Helper()
		return e.call("POST", path, bearer(k), jsonBody(t, map[string]any{"text": text, "voice_id": "voice_1"}))
	}
	format := tollgate.KeyFormat{Prefix: "origin_sk_"}

	t.Run("003 keys look like origin_sk_", func(t *testing.T) {
		if !strings.HasPrefix(key, "origin_sk_") || len(key) != len("origin_sk_")+32+6 || format.Check(key) != nil {
			t.Fatalf("issued key %q: want origin_sk_ + 32 + a 6-character checksum", key)
		}
		r := speak(key, "/v1/tts", "Hello")
		if r.Status != 200 || r.JSON(t)["output"] != "HELLO" {
			t.Fatalf("a generation: %d %s", r.Status, r.Body)
		}
		wantRateHeaders(t, r, 60)
		// A typo fails the checksum and is refused without a lookup or a
		// call; a key of another deployment's format too.
		other, _ := tollgate.KeyFormat{}.Generate(nil)
		for _, k := range []string{flipLast(key), other, "origin_sk_" + strings.Repeat("a", 38)} {
			e.notForwarded(t, func() {
				r := speak(k, "/v1/tts", "Hello")
				wantError(t, r, 401, numeric, map[string]any{"code": 401.0, "error": missingOrInvalid})
			})
		}
	})

	// 401 "Missing or invalid API key".
	t.Run("003 401 missing API key", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := e.call("POST", "/v1/tts", map[string]string{"Content-Type": "application/json"}, []byte(`{"text":"hi"}`))
			wantError(t, r, 401, numeric, map[string]any{"code": 401.0, "error": missingOrInvalid})
		})
	})

	// 403 "Your plan does not include this feature. Upgrade at /pricing."
	t.Run("003 403 plan does not include this feature", func(t *testing.T) {
		e.notForwarded(t, func() {
			body, ct := multipartFile(t, "file", "me.wav", audioFile(t, "wav_s16le.wav"))
			r := e.call("POST", "/v1/voices/clone", map[string]string{"Authorization": "Bearer " + key, "Content-Type": ct}, body)
			wantError(t, r, 403, numeric, map[string]any{"code": 403.0, "error": "Your plan does not include this feature. Upgrade at /pricing."})
		})
	})

	// 404 "Voice not found: voice_nonexistent".
	t.Run("003 404 invalid voice id", func(t *testing.T) {
		const body = `{"error": "Voice not found: voice_nonexistent", "code": 404}`
		h := bearer(key)
		h[faultStatus], h[faultBody] = "404", body
		r := e.call("POST", "/v1/tts", h, []byte(`{"text":"hi","voice_id":"voice_nonexistent"}`))
		if r.Status != 404 || string(r.Body) != body {
			t.Errorf("%d %s, want the model's 404 byte for byte", r.Status, r.Body)
		}
	})
	t.Run("003 404 the requested resource does not exist", func(t *testing.T) {
		r := e.call("POST", "/v1/sing", bearer(key), []byte(`{}`))
		wantError(t, r, 404, numeric, map[string]any{"code": 404.0, "error": "No model is served at POST /v1/sing."})
	})
	// The seed has no 405 or 413: the example remaps them to its own.
	t.Run("003 statuses outside the seed's list are remapped", func(t *testing.T) {
		r := e.call("GET", "/v1/tts", bearer(key), nil)
		withDetails := map[string]string{"error": jsonString, "code": jsonNumber, "details": jsonObject}
		wantError(t, r, 404, withDetails, map[string]any{"code": 404.0, "error": "Method GET is not allowed here; use POST."})
		e.notForwarded(t, func() {
			big := []byte(`{"text":"` + strings.Repeat("a", 1<<20) + `"}`)
			r := e.call("POST", "/v1/tts", bearer(key), big)
			wantError(t, r, 422, withDetails, map[string]any{"code": 422.0, "error": "~larger than"})
		})
	})

	// 422 "Text exceeds maximum length of 200 characters for demo endpoint."
	t.Run("003 422 text too long for the demo endpoint", func(t *testing.T) {
		long := strings.Repeat("a", 350)
		e.notForwarded(t, func() {
			r := speak(key, "/v1/tts/demo", long)
			// The seed's details are {length, max_length}; tollgate's add
			// the list of every violation.
			body := wantError(t, r, 422, map[string]string{"error": jsonString, "code": jsonNumber, "details": jsonObject},
				map[string]any{"code": 422.0, "error": "Text exceeds maximum length of 200 characters for demo endpoint."})
			d, _ := body["details"].(map[string]any)
			if d["length"] != 350.0 || d["max_length"] != 200.0 {
				t.Errorf("details %v, want length 350 and max_length 200", d)
			}
		})
		// 200 characters pass; the full endpoint takes 350.
		if r := speak(key, "/v1/tts/demo", long[:200]); r.Status != 200 {
			t.Errorf("200 characters on the demo endpoint: %d %s", r.Status, r.Body)
		}
		if r := speak(key, "/v1/tts", long); r.Status != 200 {
			t.Errorf("350 characters on /v1/tts: %d %s", r.Status, r.Body)
		}
	})
	t.Run("003 422 valid JSON but invalid data", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := e.call("POST", "/v1/tts", bearer(key), []byte(`{"text": 7}`))
			wantError(t, r, 422, map[string]string{"error": jsonString, "code": jsonNumber, "details": jsonObject},
				map[string]any{"code": 422.0, "error": "/text: got number, want string"})
		})
	})
	t.Run("003 400 missing required fields or not JSON", func(t *testing.T) {
		// validation_error.malformed: 400 splits the seed's 400 from its
		// 422 (valid JSON, invalid data).
		e.notForwarded(t, func() {
			r := e.call("POST", "/v1/tts", bearer(key), []byte(`{"voice_id":"voice_1"}`))
			wantError(t, r, 400, map[string]string{"error": jsonString, "code": jsonNumber, "details": jsonObject},
				map[string]any{"code": 400.0, "error": "body: missing property 'text'"})
			r = e.call("POST", "/v1/tts", bearer(key), []byte(`{"text": "unterminated`))
			wantError(t, r, 400, map[string]string{"error": jsonString, "code": jsonNumber, "details": jsonObject},
				map[string]any{"code": 400.0, "error": "The request body is not valid JSON."})
		})
	})

	// 429 with Retry-After and X-RateLimit-*.
	t.Run("003 429 rate limit exceeded", func(t *testing.T) {
		k := e.admin("POST", "/admin/orgs/indie/keys", map[string]any{"name": "burst"}, 201)["key"].(string)
		// 60 at once, then one a second: the refusal comes within the
		// tokens earned while the test runs.
		start := time.Now()
		var r response
		admitted := 0
		for ; admitted < 200; admitted++ {
			before := e.up.Requests()
			r = speak(k, "/v1/tts/demo", "x")
			if r.Status != 200 {
				if e.up.Requests() != before {
					t.Error("the refused request reached the upstream")
				}
				break
			}
			if rem := wantRateHeaders(t, r, 60); admitted == 0 && rem != 59 {
				t.Errorf("first request: X-RateLimit-Remaining %d, want 59", rem)
			}
		}
		if earned := int(time.Since(start).Seconds()) + 1; admitted < 60 || admitted > 60+earned {
			t.Errorf("%d requests admitted in %v, want 60 (+%d earned meanwhile)", admitted, time.Since(start), earned)
		}
		body := wantError(t, r, 429, withRetry, map[string]any{"code": 429.0, "error": "Rate limit of 60 requests per minute exceeded."})
		ra := wantRetryAfter(t, r, 1, 1)
		if body["retry_after"] != float64(ra) {
			t.Errorf("retry_after %v, Retry-After %d", body["retry_after"], ra)
		}
		if wantRateHeaders(t, r, 60) != 0 {
			t.Error("X-RateLimit-Remaining is not 0")
		}
		// Per key: the org's other key is not limited.
		if r := speak(key, "/v1/tts/demo", "x"); r.Status != 200 {
			t.Errorf("another key: %d", r.Status)
		}
	})

	// 429 "Character limit exceeded for your plan."
	t.Run("003 429 character limit exceeded", func(t *testing.T) {
		if got := e.admin("GET", "/admin/plans/free", nil, 200)["monthly_limits"]; got.(map[string]any)["tts"] != 500000.0 {
			t.Errorf("the free plan's monthly characters: %v, want 500000", got)
		}
		_, k, _ := e.newOrg("wordy", "free", []string{"tts"}, nil)
		// The org's own limit, lower than the plan's for the test: 20.
		e.admin("PUT", "/admin/orgs/wordy/billing", map[string]any{"monthly_limits": map[string]float64{"tts": 20}}, 200)
		if r := speak(k, "/v1/tts", strings.Repeat("b", 15)); r.Status != 200 {
			t.Fatalf("15 characters: %d %s", r.Status, r.Body)
		}
		now := time.Now().UTC()
		resets := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
		e.notForwarded(t, func() {
			r := speak(k, "/v1/tts", strings.Repeat("c", 10))
			body := wantError(t, r, 429, map[string]string{"error": jsonString, "code": jsonNumber, "retry_after": jsonNumber, "details": jsonObject},
				map[string]any{"code": 429.0, "error": "Character limit exceeded for your plan.",
					"details": map[string]any{"characters_used": 15.0, "characters_limit": 20.0, "resets_at": resets}})
			ra := wantRetryAfter(t, r, 1, 31*24*3600)
			if body["retry_after"] != float64(ra) {
				t.Errorf("retry_after %v, Retry-After %d", body["retry_after"], ra)
			}
		})
	})

	// 500 and 503: the model server failing, unreachable or slow.
	t.Run("003 500 the model server fails", func(t *testing.T) {
		h := bearer(key)
		h[faultStatus] = "500"
		r := e.call("POST", "/v1/tts", h, []byte(`{"text":"hi"}`))
		wantError(t, r, 500, numeric, map[string]any{"code": 500.0, "error": "The model server failed."})
	})
	t.Run("003 503 the model server is unreachable or overloaded", func(t *testing.T) {
		h := bearer(key)
		h[faultDrop] = "1"
		r := e.call("POST", "/v1/tts", h, []byte(`{"text":"hi"}`))
		wantError(t, r, 503, withRetry, map[string]any{"code": 503.0, "retry_after": 1.0, "error": "The model server is unreachable."})
		wantRetryAfter(t, r, 1, 1)
		// The model's own 503 passes through, with Retry-After.
		const body = `{"error": "System is temporarily overloaded.", "code": 503}`
		h = bearer(key)
		h[faultStatus], h[faultBody] = "503", body
		r = e.call("POST", "/v1/tts", h, []byte(`{"text":"hi"}`))
		if r.Status != 503 || string(r.Body) != body {
			t.Errorf("%d %s, want the model's 503", r.Status, r.Body)
		}
		wantRetryAfter(t, r, 1, 1)
	})

	// 201 and 409 on keys (the admin API, in tollgate's own envelope).
	t.Run("003 201 a new API key, 409 a duplicate name", func(t *testing.T) {
		e.admin("POST", "/admin/orgs/indie/keys", map[string]any{"name": "ci"}, 201)
		r := e.admin("POST", "/admin/orgs/indie/keys", map[string]any{"name": "ci"}, 409)
		if r["code"] != "conflict" {
			t.Errorf("duplicate key name: %v", r)
		}
	})

	// The API's existing keys, imported: their holders keep them.
	t.Run("003 existing origin_sk_ keys imported keep working", func(t *testing.T) {
		env := []string{"TOLLGATE_SERVER=" + e.url, "TOLLGATE_ADMIN_TOKEN=" + testAdmin}
		cli := func(stdin string, args ...string) (string, error) {
			var out bytes.Buffer
			cmd := newRootCmd(&out, io.Discard, env)
			cmd.SetIn(strings.NewReader(stdin))
			cmd.SetArgs(args)
			err := cmd.ExecuteContext(context.Background())
			return out.String(), err
		}
		e.newOrg("legacy", "free", []string{"tts", "tts-demo"}, nil)
		// Keys the API issued itself: no tollgate checksum.
		plain := "origin_sk_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
		hashed := "origin_sk_00112233445566778899aabbccddeeff"
		sum := sha256.Sum256([]byte(hashed))
		if out, err := cli(plain+"\n", "key", "import", "--org", "legacy", "--name", "alice", "--key", "-", "--rpm", "30"); err != nil {
			t.Fatalf("import --key -: %v\n%s", err, out)
		} else if strings.Contains(out, plain) || !strings.Contains(out, `"checksum": false`) {
			t.Errorf("import output shows the key or misses its checksum flag:\n%s", out)
		}
		if out, err := cli("", "key", "import", "--org", "legacy", "--name", "bob", "--hash", hex.EncodeToString(sum[:]), "--scheme", "sha256",
			"--prefix", "origin_sk_0011", "--models", "tts-demo", "--created-at", "2025-01-31T12:00:00Z"); err != nil {
			t.Fatalf("import --hash: %v\n%s", err, out)
		}
		r := speak(plain, "/v1/tts", "imported")
		if r.Status != 200 {
			t.Fatalf("imported plaintext key: %d %s", r.Status, r.Body)
		}
		wantRateHeaders(t, r, 30) // its own rpm
		if r := speak(hashed, "/v1/tts/demo", "imported"); r.Status != 200 {
			t.Fatalf("imported SHA-256 key: %d %s", r.Status, r.Body)
		}
		// Its settings hold: bob's key is for the demo endpoint only.
		r = speak(hashed, "/v1/tts", "imported")
		wantError(t, r, 403, numeric, map[string]any{"code": 403.0, "error": "Model access not enabled for tts."})
		// Near misses of keys without a checksum are still refused.
		for _, k := range []string{plain[:len(plain)-1] + "1", strings.ToUpper(hashed)} {
			wantError(t, speak(k, "/v1/tts", "x"), 401, numeric, map[string]any{"code": 401.0})
		}
		// Tollgate's own keys still fail offline on a typo.
		e.notForwarded(t, func() { wantError(t, speak(flipLast(key), "/v1/tts", "x"), 401, numeric, nil) })

		// The listing shows which keys are imported.
		out, err := cli("", "key", "list", "--org", "legacy")
		if err != nil {
			t.Fatal(err)
		}
		var raw struct{ Keys []map[string]any }
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatalf("key list: %v\n%s", err, out)
		}
		got := map[string]string{}
		for _, k := range raw.Keys {
			got[k["name"].(string)] = k["prefix"].(string) + " " + k["hash_scheme"].(string) + " " + k["created_at"].(string)[:10]
		}
		today := time.Now().UTC().Format("2006-01-02")
		if got["alice"] != "origin_sk_9f8e hmac-sha256 "+today || got["bob"] != "origin_sk_0011 sha256 2025-01-31" {
			t.Errorf("key list: %v", got)
		}

		// Rotating an imported key issues an origin_sk_ key with a checksum.
		var alice string
		for _, k := range raw.Keys {
			if k["name"] == "alice" {
				alice = k["id"].(string)
			}
		}
		out, err = cli("", "key", "rotate", alice, "--overlap", "1h")
		if err != nil {
			t.Fatal(err)
		}
		var rot struct{ Key struct{ Key string } }
		json.Unmarshal([]byte(out), &rot)
		if format.Check(rot.Key.Key) != nil {
			t.Errorf("rotated-in key %q is not an origin_sk_ key with a checksum", rot.Key.Key)
		}
		if r := speak(rot.Key.Key, "/v1/tts", "rotated"); r.Status != 200 {
			t.Errorf("rotated-in key: %d", r.Status)
		}
	})
}
