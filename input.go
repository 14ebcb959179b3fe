package tollgate

// DefaultMaxBytes caps a request body when a model sets no cap (100 MB).
const DefaultMaxBytes = 100 << 20

// DefaultMaxJSONBytes caps a body that is validated as JSON (held in
// memory to validate) when the model sets no cap.
const DefaultMaxJSONBytes = 1 << 20

// DefaultMinSeconds is the shortest audio accepted unless a model says
// otherwise.
const DefaultMinSeconds = 0.5

// Input holds a model's input rules, checked before the upstream is
// contacted. The zero value caps the body at DefaultMaxBytes and checks
// nothing else.
type Input struct {
	// MaxBytes caps the body (0: DefaultMaxBytes, or DefaultMaxJSONBytes
	// when the body is validated as JSON).
	MaxBytes int64
	// Audio, when set, requires an audio upload and checks it.
	Audio *AudioInput
	// Schema is a JSON Schema (as JSON) the body must satisfy.
	Schema []byte
	// MaxLength caps string fields, by JSON pointer, in characters.
	MaxLength map[string]int
	// TextField is the JSON pointer of the text that is metered in
	// characters (optional).
	TextField string
}

// ValidatesJSON reports whether the body is parsed as JSON.
func (in *Input) ValidatesJSON() bool {
	return in != nil && (len(in.Schema) > 0 || len(in.MaxLength) > 0 || in.TextField != "")
}

// BodyCap returns the effective body cap.
func (in *Input) BodyCap() int64 {
	switch {
	case in == nil:
		return DefaultMaxBytes
	case in.MaxBytes > 0:
		return in.MaxBytes
	case in.ValidatesJSON() && in.Audio == nil:
		return DefaultMaxJSONBytes
	}
	return DefaultMaxBytes
}

// AudioInput says where a model's audio is and what is accepted.
type AudioInput struct {
	// Field is the multipart form field holding the file; empty means the
	// raw body (with an audio content type).
	Field string
	// Formats accepted: a container ("wav", "ogg", "mp3", "flac", "webm",
	// "mp4", "aac", "pcm"), a codec ("opus", "vorbis", "pcm_s16le", …) or
	// container/codec ("ogg/opus"). Empty accepts every format.
	Formats []string
	// MinSeconds is the shortest accepted duration (0: DefaultMinSeconds;
	// negative: no minimum beyond having samples).
	MinSeconds float64
	// MaxSeconds is the longest accepted duration (0: no maximum).
	MaxSeconds float64
}

// Accepts reports whether a probed format/codec pair is accepted.
func (a *AudioInput) Accepts(format, codec string) bool {
	if len(a.Formats) == 0 {
		return true
	}
	for _, f := range a.Formats {
		if f == format || (codec != "" && (f == codec || f == format+"/"+codec)) {
			return true
		}
	}
	return false
}

// Min returns the effective minimum duration in seconds.
func (a *AudioInput) Min() float64 {
	switch {
	case a.MinSeconds == 0:
		return DefaultMinSeconds
	case a.MinSeconds < 0:
		return 0
	}
	return a.MinSeconds
}

// Facts are what validation measured about a request's input; metering
// charges them.
type Facts struct {
	// AudioSeconds is the real duration of the uploaded audio.
	AudioSeconds float64
	// Characters is the length of the metered text field.
	Characters int
	// Bytes is the body size.
	Bytes int64
	// Summary is a bounded description of the input, for history.
	Summary string
}
