package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tollgate/tollgate/config"
)

// TestConformanceVoicePlatform walks seeds 000 (the voice platform's
// errors page) and 001 (its auth and rate limits page) against
// examples/voice-platform.
func TestConformanceVoicePlatform(t *testing.T) {
	const vfastTimeout = time.Second
	e := startExample(t, "voice-platform", func(c *config.Config) {
		// Every batch endpoint times out at 60 s, as the file says; the
		// test waits for VFast's timeout only, shortened.
		for _, id := range []string{"stt-batch", "stt-batch-english-vfast", "deepfake-batch"} {
			if m := modelOf(t, c, id); m.Timeout != 60*time.Second {
				t.Errorf("%s: timeout %v, want the seed's 60s", id, m.Timeout)
			}
		}
		modelOf(t, c, "stt-batch-english-vfast").Timeout = vfastTimeout
	})
	all := []string{"stt-batch", "stt-batch-english-vfast", "deepfake-batch", "stt-streaming", "svd-streaming"}
	_, key, _ := e.newOrg("acme", "standard", all, nil)
	_, sttOnly, _ := e.newOrg("stt-only", "standard", []string{"stt-batch"}, nil)
	detail := map[string]string{"detail": jsonString}
	opus := audioFile(t, "ogg_opus.opus") // 1 s

	// upload posts data as the multipart "file" field with headers h.
	upload := func(path string, h map[string]string, name string, data []byte) response {
		t.Helper()
		body, ct := multipartFile(t, "file", name, data)
		hh := map[string]string{"Content-Type": ct}
		for k, v := range h {
			hh[k] = v
		}
		return e.call("POST", path, hh, body)
	}
	withKey := func(k string) map[string]string { return map[string]string{"X-API-Key": k} }

	// Authentication (000 "401 Unauthorized", 001).
	t.Run("000 401 no X-API-Key header", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := upload("/stt/batch", nil, "a.opus", opus)
			wantError(t, r, 401, detail, map[string]any{
				"detail": "Missing API key. Send it in the X-API-Key header or as Authorization: Bearer <key>."})
			wantNoHeader(t, r, "X-RateLimit-Limit", "Retry-After")
		})
	})
	t.Run("000 401 the key under another header name", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := upload("/stt/batch", map[string]string{"X-Api-Token": key}, "a.opus", opus)
			wantError(t, r, 401, detail, map[string]any{"detail": "~Missing API key"})
		})
	})
	t.Run("000 401 an invalid key", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := upload("/stt/batch", withKey(flipLast(key)), "a.opus", opus)
			wantError(t, r, 401, detail, map[string]any{"detail": "Invalid API key: it is unknown, malformed, expired or revoked."})
		})
	})
	t.Run("000 x-api-key in lower case is the same header", func(t *testing.T) {
		// The seed calls x-api-key a mistake; HTTP header names are
		// case-insensitive, and tollgate reads them so.
		body, ct := multipartFile(t, "file", "a.opus", opus)
		status, _ := rawHeaders(t, e.url, "POST", "/stt/batch", map[string]string{"x-api-key": key, "content-type": ct}, string(body))
		if !strings.HasPrefix(status, "HTTP/1.1 200") {
			t.Errorf("lower-case x-api-key: %s, want 200", status)
		}
	})
	t.Run("000 Authorization Bearer is accepted too", func(t *testing.T) {
		r := upload("/stt/batch", map[string]string{"Authorization": "Bearer " + key}, "a.opus", opus)
		if r.Status != 200 {
			t.Errorf("Bearer: %d %s, want 200 (tollgate also takes Authorization)", r.Status, r.Body)
		}
	})

	// 403 (000 "403 Forbidden (REST)", 001).
	t.Run("000 403 model not enabled for the org", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := upload("/deepfake/batch", withKey(sttOnly), "a.opus", opus)
			wantError(t, r, 403, detail, map[string]any{"detail": "Model access not enabled for deepfake-batch."})
		})
	})
	t.Run("000 403 monthly limit reached", func(t *testing.T) {
		_, k, _ := e.newOrg("quota", "standard", all, nil)
		// The org's own monthly limit on the model: 1.5 audio seconds.
		e.admin("PUT", "/admin/orgs/quota/billing", map[string]any{"monthly_limits": map[string]float64{"stt-batch": 1.5}}, 200)
		if r := upload("/stt/batch", withKey(k), "a.opus", opus); r.Status != 200 {
			t.Fatalf("first second of audio: %d %s", r.Status, r.Body)
		}
		e.notForwarded(t, func() {
			r := upload("/stt/batch", withKey(k), "a.opus", opus)
			wantError(t, r, 403, detail, map[string]any{"detail": "~monthly limit reached"})
			// The month's end: no retry helps before.
			wantRetryAfter(t, r, 1, 31*24*3600)
			wantRateHeaders(t, r, 6000)
		})
		// The other models keep their own limits.
		if r := upload("/stt/batch/english-vfast", withKey(k), "a.opus", opus); r.Status != 200 {
			t.Errorf("another model: %d %s", r.Status, r.Body)
		}
	})
	t.Run("001 403 deepfake batch answers a bad key 403", func(t *testing.T) {
		e.notForwarded(t, func() {
			r := upload("/deepfake/batch", withKey(flipLast(key)), "a.opus", opus)
			wantError(t, r, 403, detail, map[string]any{"detail": "Invalid API key: it is unknown, malformed, expired or revoked."})
			r = upload("/deepfake/batch", nil, "a.opus", opus)
			wantError(t, r, 403, detail, map[string]any{"detail": "~Missing API key"})
		})
	})
	t.Run("001 403 deepfake batch answers an exhausted quota 403, the detail telling the cause", func(t *testing.T) {
		_, k, _ := e.newOrg("df-quota", "standard", all, nil)
		e.admin("PUT", "/admin/orgs/df-quota/billing", map[string]any{"monthly_limits": map[string]float64{"deepfake-batch": 1}}, 200)
		if r := upload("/deepfake/batch", withKey(k), "a.opus", opus); r.Status != 200 {
			t.Fatalf("first second: %d %s", r.Status, r.Body)
		}
		r := upload("/deepfake/batch", withKey(k), "a.opus", opus)
		quota := wantError(t, r, 403, detail, map[string]any{"detail": "~monthly limit reached"})
		bad := upload("/deepfake/batch", withKey(flipLast(k)), "a.opus", opus).JSON(t)
		if quota["detail"] == bad["detail"] {
			t.Errorf("the same detail for a bad key and a spent quota: %v", quota["detail"])
		}
	})
	t.Run("001 keys' settings are fixed at creation", func(t *testing.T) {
		keys := e.admin("GET", "/admin/orgs/acme/keys", nil, 200)["keys"].([]any)
		id := keys[0].(map[string]any)["id"].(string)
		for _, m := range []string{"PUT", "PATCH"} {
			r := e.do(m, "/admin/keys/"+id, map[string]string{"Authorization": "Bearer " + testAdmin}, `{"rpm":1}`)
			if r.Status < 400 {
				t.Errorf("%s /admin/keys/%s: %d, want no update call", m, id, r.Status)
			}
		}
	})

	// 429 (000 "Rate limit errors", 001 "Concurrent request limit").
	t.Run("000 429 concurrent request limit, immediate and freed on completion", func(t *testing.T) {
		e.admin("PUT", "/admin/orgs/acme/concurrency/stt-batch", map[string]any{"limit": 1}, 200)
		defer e.admin("DELETE", "/admin/orgs/acme/concurrency/stt-batch", nil, 200)
		before := e.up.Requests()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := withKey(key)
			h[faultDelay] = "3s"
			upload("/stt/batch", h, "a.opus", opus)
		}()
		waitFor(t, 5*time.Second, func() bool { return e.up.Requests() == before+1 })
		start := time.Now()
		e.notForwarded(t, func() {
			r := upload("/stt/batch", withKey(key), "a.opus", opus)
			wantError(t, r, 429, detail, map[string]any{"detail": "Concurrent request limit reached for this model."})
			wantRetryAfter(t, r, 1, 1)
			wantRateHeaders(t, r, 6000)
		})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("refused after %v: the limit must answer at once, not queue", d)
		}
		// Another model of the org is not held by this one's limit.
		if r := upload("/stt/batch/english-vfast", withKey(key), "a.opus", opus); r.Status != 200 {
			t.Errorf("another model while stt-batch is full: %d", r.Status)
		}
		wg.Wait()
		if r := upload("/stt/batch", withKey(key), "a.opus", opus); r.Status != 200 {
			t.Errorf("after the in-flight request completed: %d %s", r.Status, r.Body)
		}
	})

	// Audio (000 "Audio validation errors").
	t.Run("000 400 VFast takes Opus only", func(t *testing.T) {
		for _, f := range []string{"mp3_cbr.mp3", "wav_s16le.wav", "flac_s16.flac", "ogg_vorbis.ogg", "mp4_aac.m4a"} {
			e.notForwarded(t, func() {
				r := upload("/stt/batch/english-vfast", withKey(key), f, audioFile(t, f))
				wantError(t, r, 400, detail, map[string]any{"detail": "~accepted: opus."})
			})
		}
		for _, f := range []string{"ogg_opus.opus", "webm_opus.webm", "mp4_opus.mp4"} {
			if r := upload("/stt/batch/english-vfast", withKey(key), f, audioFile(t, f)); r.Status != 200 {
				t.Errorf("%s: %d %s, want 200", f, r.Status, r.Body)
			}
		}
		// The other batch endpoints take every format.
		if r := upload("/stt/batch", withKey(key), "a.mp3", audioFile(t, "mp3_cbr.mp3")); r.Status != 200 {
			t.Errorf("MP3 on stt-batch: %d %s", r.Status, r.Body)
		}
	})
	t.Run("000 422 audio shorter than 0.5 s", func(t *testing.T) {
		for _, path := range []string{"/deepfake/batch", "/stt/batch", "/stt/batch/english-vfast"} {
			e.notForwarded(t, func() {
				r := upload(path, withKey(key), "short.opus", audioFile(t, "ogg_opus_short.opus"))
				wantError(t, r, 422, detail, map[string]any{"detail": "The audio is 0.30 s long; the minimum is 0.5 s."})
			})
		}
	})
	t.Run("000 422 empty files and files without samples", func(t *testing.T) {
		const noSamples = "The file holds no audio samples (empty, metadata only, or the audio track was stripped)."
		for name, tc := range map[string]struct {
			data []byte
			want string
		}{
			"empty":                      {nil, "The upload is empty: it holds no audio samples."},
			"header only":                {sineWAV(16000, 0, 440), noSamples},
			"claims 10 s, holds nothing": {emptyWAV(320000), noSamples},
		} {
			t.Run(name, func(t *testing.T) {
				e.notForwarded(t, func() {
					r := upload("/deepfake/batch", withKey(key), "a.wav", tc.data)
					wantError(t, r, 422, detail, map[string]any{"detail": tc.want})
				})
			})
		}
		// Digital silence has samples: tollgate measures samples, not
		// loudness, and the model judges silence.
		if r := upload("/deepfake/batch", withKey(key), "silence.wav", audioFile(t, "wav_silence.wav")); r.Status != 200 {
			t.Errorf("1 s of silence: %d %s", r.Status, r.Body)
		}
	})

	// Timeouts and size (000 "504 Gateway Timeout").
	t.Run("000 504 VFast past its processing timeout", func(t *testing.T) {
		h := withKey(key)
		h[faultDelay] = "10s"
		start := time.Now()
		r := upload("/stt/batch/english-vfast", h, "a.opus", opus)
		wantError(t, r, 504, detail, map[string]any{"detail": "The model did not answer in time."})
		if d := time.Since(start); d < vfastTimeout || d > vfastTimeout+3*time.Second {
			t.Errorf("answered after %v, want the timeout (%v)", d, vfastTimeout)
		}
		wantRateHeaders(t, r, 6000)
	})
	t.Run("000 413 a file over 100 MB is refused before upload", func(t *testing.T) {
		// The seed: over the recommended 100 MB a 504 may come; tollgate
		// refuses the Content-Length at once.
		e.notForwarded(t, func() {
			status, lines := rawHeaders(t, e.url, "POST", "/stt/batch", map[string]string{
				"X-API-Key": key, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": strconv.Itoa(100<<20 + 1),
			}, "")
			if !strings.HasPrefix(status, "HTTP/1.1 413") {
				t.Errorf("status %q, want 413", status)
			}
			if ct, _ := headerLine(lines, "content-type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	})

	// 503 (000 "Server errors").
	t.Run("000 503 the inference server is overloaded", func(t *testing.T) {
		h := withKey(key)
		h[faultStatus] = "503"
		r := upload("/stt/batch", h, "a.opus", opus)
		// The model's own answer, in the same envelope, passes through
		// with Retry-After.
		if r.Status != 503 || string(r.Body) != `{"detail":"model overloaded, try again"}` {
			t.Errorf("status %d body %s", r.Status, r.Body)
		}
		wantRetryAfter(t, r, 1, 1)
	})
	t.Run("000 502 the model server fails", func(t *testing.T) {
		h := withKey(key)
		h[faultStatus] = "500"
		r := upload("/stt/batch", h, "a.opus", opus)
		wantError(t, r, 502, detail, map[string]any{"detail": "The model server failed."})
		if strings.Contains(string(r.Body), "CUDA") {
			t.Errorf("the upstream's internals leaked: %s", r.Body)
		}
	})

	// Streaming (000 "WebSocket close code …"): refusals accept the upgrade
	// and close at once with the code, its catalog code as the reason.
	pcm := pcm16(16000, 100*time.Millisecond)
	const declared = "audio_format=s16le&sample_rate=16000&num_channels=1"
	wantClose := func(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
		t.Helper()
		ce := closeOf(t, c)
		if ce.Code != code || !strings.HasPrefix(ce.Reason, reason) {
			t.Errorf("closed %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
		}
	}
	t.Run("000 streaming answers the model", func(t *testing.T) {
		for _, path := range []string{"/stt/streaming", "/svd/streaming"} {
			c, _ := dialWS(t, e.wsURL(path, declared+"&api_key="+key), nil)
			send(t, c, websocket.MessageBinary, pcm)
			if a := readAnswer(t, c); a.Bytes != len(pcm) {
				t.Errorf("%s: the model answered %+v", path, a)
			}
			c.Close(websocket.StatusNormalClosure, "")
		}
	})
	t.Run("000 4001 STT streaming without or with an invalid api_key", func(t *testing.T) {
		c, _ := dialWS(t, e.wsURL("/stt/streaming", declared), nil)
		wantClose(t, c, 4001, "missing_credential")
		c, _ = dialWS(t, e.wsURL("/stt/streaming", declared+"&api_key="+flipLast(key)), nil)
		wantClose(t, c, 4001, "invalid_credential")
	})
	t.Run("000 4003 streaming with the model not enabled", func(t *testing.T) {
		for _, path := range []string{"/stt/streaming", "/svd/streaming"} {
			c, _ := dialWS(t, e.wsURL(path, declared+"&api_key="+sttOnly), nil)
			wantClose(t, c, 4003, "no_model_access")
		}
	})
	t.Run("000 4029 streaming with the monthly quota full", func(t *testing.T) {
		_, k, _ := e.newOrg("stream-quota", "standard", all, nil)
		e.admin("PUT", "/admin/orgs/stream-quota/billing", map[string]any{"monthly_limits": map[string]float64{"stt-streaming": 0.3}}, 200)
		c, _ := dialWS(t, e.wsURL("/stt/streaming", declared+"&api_key="+k), nil)
		go func() {
			for c.Write(context.Background(), websocket.MessageBinary, pcm) == nil {
				time.Sleep(2 * time.Millisecond)
			}
		}()
		wantClose(t, c, 4029, "quota_exceeded") // cut mid-stream at 0.3 s
		next, _ := dialWS(t, e.wsURL("/stt/streaming", declared+"&api_key="+k), nil)
		wantClose(t, next, 4029, "quota_exceeded") // and refused at the handshake
	})
	t.Run("000 4029 streaming over the concurrency limit", func(t *testing.T) {
		e.admin("PUT", "/admin/orgs/acme/concurrency/stt-streaming", map[string]any{"limit": 1}, 200)
		defer e.admin("DELETE", "/admin/orgs/acme/concurrency/stt-streaming", nil, 200)
		first, _ := dialWS(t, e.wsURL("/stt/streaming", declared+"&api_key="+key), nil)
		send(t, first, websocket.MessageBinary, pcm)
		readAnswer(t, first)
		second, _ := dialWS(t, e.wsURL("/stt/streaming", declared+"&api_key="+key), nil)
		wantClose(t, second, 4029, "concurrency_limit_exceeded")
		first.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("000 1003 SVD streaming with audio_format, sample_rate or num_channels missing, misspelled or unsupported", func(t *testing.T) {
		for _, q := range []string{
			"",
			"sample_rate=16000&num_channels=1",
			"audio_format=s16le&sample_rat=16000&num_channels=1",
			"audio_format=mp3&sample_rate=16000&num_channels=1",
			"audio_format=s16le&sample_rate=16k&num_channels=1",
			"audio_format=s16le&sample_rate=16000&num_channels=3",
		} {
			c, _ := dialWS(t, e.wsURL("/svd/streaming", q+"&api_key="+key), nil)
			wantClose(t, c, 1003, "validation_error")
		}
	})
	t.Run("000 4002 SVD streaming audio that does not match the declared format", func(t *testing.T) {
		for name, data := range map[string][]byte{
			"not whole samples": make([]byte, 3201),
			"a WAV file":        sineWAV(16000, 100*time.Millisecond, 440),
			"an MP3 file":       audioFile(t, "mp3_cbr.mp3"),
		} {
			c, _ := dialWS(t, e.wsURL("/svd/streaming", declared+"&api_key="+key), nil)
			send(t, c, websocket.MessageBinary, data)
			ce := closeOf(t, c)
			if ce.Code != 4002 || !strings.HasPrefix(ce.Reason, "audio_format_mismatch") {
				t.Errorf("%s: closed %d %q, want 4002 audio_format_mismatch", name, ce.Code, ce.Reason)
			}
		}
		// Whole samples of the declared encoding at another rate than
		// declared (16 kHz audio declared as 44.1 kHz) look like any
		// audio to tollgate; the model that finds out closes 4002
		// itself, and that reaches the client unchanged.
		c, _ := dialWS(t, e.wsURL("/svd/streaming", declared+"&api_key="+key+
			"&close_after=1&close_code=4002&close_reason=sample+rate+does+not+match+the+declaration"), nil)
		send(t, c, websocket.MessageBinary, make([]byte, 640))
		readAnswer(t, c)
		if ce := closeOf(t, c); ce.Code != 4002 || ce.Reason != "sample rate does not match the declaration" {
			t.Errorf("the model's 4002: closed %d %q, want it passed through", ce.Code, ce.Reason)
		}
	})

	// The Platform API (001).
	for _, name := range []string{
		"001 POST /api_service realtime_websocket submission returns a realtime_url",
		"001 POST /api_service single-file batch (at most 5 MB)",
		"001 POST /api_service multi-file batch with job_id and finalize_job",
		"001 GET /api_service/job_status/{job_id} until completed",
		"001 Platform API auth scheme",
	} {
		t.Run(name, func(t *testing.T) { t.Skip(waitsOnJobs) })
	}
}
