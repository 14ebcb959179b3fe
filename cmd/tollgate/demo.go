package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/httpapi"
	"github.com/tollgate/tollgate/internal/demomodel"
)

func newDemoCmd(stdout, stderr io.Writer, environ []string) *cobra.Command {
	var dir, listen string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the gateway on its embedded default with a demo model server, an org and a key",
		RunE: func(cmd *cobra.Command, args []string) error {
			d := &Demo{Dir: dir, Listen: listen, Out: stdout,
				Logger: slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			if err := d.Open(cmd.Context()); err != nil {
				d.Close()
				return err
			}
			d.PrintWelcome()
			return d.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&dir, "data", "tollgate-demo", "data directory (SQLite file, secrets, sample audio)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "gateway address (127.0.0.1:0 picks a free port)")
	return cmd
}

// Demo is `tollgate demo`: the gateway on SQLite and the in-memory limiter,
// a demo model server on loopback, an org granted every model and a fresh
// key.
type Demo struct {
	Dir, Listen string
	Out         io.Writer
	Logger      *slog.Logger

	Main   *Main
	Models *demomodel.Server
	Key    string
	Admin  string
	Sample string // path of the sample WAV file (2 s)
	Short  string // path of a 0.2 s WAV file, refused as too short
	PCM    string // path of the sample's raw PCM (16 kHz mono s16le), for the stream
}

// Demo model routes (public path → demo server path).
const (
	demoOrg  = "demo"
	demoPlan = "demo"
)

func (d *Demo) Open(ctx context.Context) error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	secret, admin, err := demoSecrets(filepath.Join(d.Dir, "secrets"))
	if err != nil {
		return err
	}
	d.Admin = admin
	d.Sample = filepath.Join(d.Dir, "sample.wav")
	if err := os.WriteFile(d.Sample, sineWAV(16000, 2*time.Second, 440), 0o644); err != nil {
		return err
	}
	d.PCM = filepath.Join(d.Dir, "sample.pcm")
	if err := os.WriteFile(d.PCM, sineWAV(16000, 2*time.Second, 440)[44:], 0o644); err != nil {
		return err
	}
	d.Short = filepath.Join(d.Dir, "short.wav")
	if err := os.WriteFile(d.Short, sineWAV(16000, 200*time.Millisecond, 440), 0o644); err != nil {
		return err
	}
	d.Models, err = demomodel.Start()
	if err != nil {
		return fmt.Errorf("demo model server: %w", err)
	}
	up := d.Models.URL
	c, err := config.Parse([]byte(fmt.Sprintf(`
listen: %q
store: %q
limiter: memory
admin_token: %q
key_secret: %q
models:
  - id: echo-text
    feature: text
    route: POST /v1/text
    upstream: %[5]q
    upstream_path: /v1/text/generate
    timeout: 10s
    input:
      json_schema: {type: object, required: [text], properties: {text: {type: string}}}
      max_length: {/text: 200}
      text_field: /text
  - id: demo-stt
    feature: stt
    route: POST /v1/audio/transcriptions
    upstream: %[5]q
    upstream_path: /v1/audio/transcribe
    timeout: 60s
    input: {audio: {min_seconds: 0.5, max_seconds: 3600}}
  - {id: slow, feature: text, route: POST /v1/slow, upstream: %[5]q, upstream_path: /v1/slow, timeout: 2s}
  - {id: failing, feature: text, route: POST /v1/fail, upstream: %[5]q, upstream_path: /v1/fail, timeout: 10s}
  - {id: flaky, feature: text, route: POST /v1/flaky, upstream: %[5]q, upstream_path: /v1/fail, timeout: 10s, fallbacks: [echo-text]}
  - id: demo-stream
    feature: stt
    route: GET /v1/stream
    upstream: %[7]q
    upstream_path: /v1/stream
    timeout: 10s
    stream: {formats: [s16le, f32le], sample_rates: [8000, 16000, 48000], channels: [1, 2]}
plans:
  - {id: %[6]s, rpm: 60, concurrency: 4, features: ["*"]}
`, d.Listen, "sqlite://"+filepath.Join(d.Dir, "tollgate.db"), admin, secret, up, demoPlan, "ws"+strings.TrimPrefix(up, "http"))), nil)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	d.Main = &Main{Config: c, Logger: d.Logger}
	if err := d.Main.Open(ctx); err != nil {
		return err
	}
	return d.provision(ctx)
}

// provision creates the demo org (once) and a new key (every run: a key is
// shown only when it is created).
func (d *Demo) provision(ctx context.Context) error {
	store := d.Main.Store
	_, err := store.Org(ctx, demoOrg)
	if tollgate.ErrorCode(err) == tollgate.CodeNotFound {
		err = store.CreateOrg(ctx, &tollgate.Org{ID: demoOrg, Name: "Demo Org", PlanID: demoPlan, CreatedAt: time.Now().UTC()})
	}
	if err != nil {
		return err
	}
	for _, m := range d.Main.Config.Models {
		if err := store.GrantModel(ctx, demoOrg, m.ID); err != nil {
			return err
		}
	}
	_, key, err := d.Main.API.CreateKey(ctx, demoOrg, httpapi.KeyRequest{Name: "demo " + time.Now().UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return err
	}
	d.Key = key
	return nil
}

// PrintWelcome prints the key once and curl lines that work as printed.
func (d *Demo) PrintWelcome() {
	u := d.Main.URL()
	k := d.Key
	w := d.Out
	fmt.Fprintf(w, `
tollgate demo is running
  gateway       %s
  model server  %s (demo upstream on loopback)
  data          %s (SQLite)
  admin token   %s

Your API key (shown once; keys are stored only as a hash):

  %s

Try it (each line works as printed):

  # a successful call to the text model
  curl -s %s/v1/text -H 'X-API-Key: %s' -H 'Content-Type: application/json' -d '{"text":"hello tollgate"}'
  # the batch audio model, with a sample WAV file
  curl -s %s/v1/audio/transcriptions -H 'Authorization: Bearer %s' -H 'Content-Type: audio/wav' --data-binary @%s
  # audio shorter than 0.5 s: 422 audio_too_short, refused before the model is called
  curl -s %s/v1/audio/transcriptions -H 'X-API-Key: %s' -H 'Content-Type: audio/wav' --data-binary @%s
  # no key: 401 missing_credential
  curl -si %s/v1/text -d '{"text":"hi"}'
  # a slow model with a 2 s timeout: 504 upstream_timeout
  curl -si %s/v1/slow -H 'X-API-Key: %s' -d '{}'
  # a failing model: 502 upstream_error
  curl -si %s/v1/fail -H 'X-API-Key: %s' -d '{}'
  # a failing model with a fallback: 200, X-Tollgate-Model: echo-text
  curl -si %s/v1/flaky -H 'X-API-Key: %s' -H 'Content-Type: application/json' -d '{"text":"failover"}'
  # the plan allows 60 requests a minute: the 61st is 429 with Retry-After
  for i in $(seq 61); do curl -s -o /dev/null -w '%%{http_code} ' %s/v1/text -H 'X-API-Key: %s' -d '{"text":"x"}'; done; echo
  # admin CLI: list the demo org's keys
  TOLLGATE_SERVER=%s TOLLGATE_ADMIN_TOKEN=%s %s key list --org %s

Stream audio over a WebSocket (raw PCM up in binary messages, one JSON answer
per message down; see README "Streaming"):

  %s
  # with websocat: the sample's raw 16 kHz mono s16le PCM, 100 ms a message
  websocat -b -B 3200 '%s' < %s

Press Ctrl-C to stop.
`, u, d.Models.URL, d.Dir, d.Admin, k,
		u, k, u, k, shellPath(d.Sample), u, k, shellPath(d.Short), u, u, k, u, k, u, k, u, k, u, d.Admin, selfCommand(), demoOrg,
		d.StreamURL(), d.StreamURL(), shellPath(d.PCM))
}

// StreamURL is the demo stream's ws:// URL, declaration and key included.
func (d *Demo) StreamURL() string {
	return "ws" + strings.TrimPrefix(d.Main.URL(), "http") + "/v1/stream?audio_format=s16le&sample_rate=16000&num_channels=1&api_key=" + d.Key
}

// Run serves until ctx ends.
func (d *Demo) Run(ctx context.Context) error {
	defer d.Models.Close()
	return d.Main.Run(ctx)
}

func (d *Demo) Close() {
	if d.Main != nil {
		d.Main.Close()
	}
	if d.Models != nil {
		d.Models.Close()
	}
}

// selfCommand is how to run this tollgate again from a shell: the binary's
// own path, or "go run ./cmd/tollgate" when it is a go run build (which
// lives in a temporary directory that is gone once it exits).
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, "go-build") {
		return "go run ./cmd/tollgate"
	}
	return shellPath(exe)
}

func shellPath(p string) string {
	if strings.ContainsAny(p, " '\"$`\\") {
		return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
	}
	return p
}

// demoSecrets loads or creates the demo's key secret and admin token, so
// keys survive restarts of the demo.
func demoSecrets(path string) (secret, admin string, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			return f[0], f[1], nil
		}
		return "", "", fmt.Errorf("%s is damaged: remove it (existing demo keys stop working)", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	r := make([]byte, 48)
	if _, err := rand.Read(r); err != nil {
		return "", "", err
	}
	secret, admin = hex.EncodeToString(r[:32]), "adm_"+hex.EncodeToString(r[32:])
	return secret, admin, os.WriteFile(path, []byte(secret+"\n"+admin+"\n"), 0o600)
}

// sineWAV returns a 16-bit mono PCM WAV file of a tone.
func sineWAV(rate int, d time.Duration, hz float64) []byte {
	n := int(d.Seconds() * float64(rate))
	b := make([]byte, 44+2*n)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i := 0; i < n; i++ {
		v := int16(0.3 * 32767 * math.Sin(2*math.Pi*hz*float64(i)/float64(rate)))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	return b
}
