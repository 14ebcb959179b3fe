package audio

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// EBML builders for the crafted cases.

func ebmlID(id uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], id)
	switch {
	case id >= 1<<24:
		return b[:]
	case id >= 1<<16:
		return b[1:]
	case id >= 1<<8:
		return b[2:]
	}
	return b[3:]
}

// ebml returns an element with an 8-byte size.
func ebml(id uint32, parts ...[]byte) []byte {
	body := cat(parts...)
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(len(body)))
	size[0] = 0x01
	return cat(ebmlID(id), size[:], body)
}

// ebmlLive returns an element of unknown size.
func ebmlLive(id uint32, parts ...[]byte) []byte {
	return cat(ebmlID(id), []byte{0xFF}, cat(parts...))
}

func ebmlUint(id uint32, v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return ebml(id, b[:])
}

func ebmlFloat(id uint32, f float64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(f))
	return ebml(id, b[:])
}

func ebmlStr(id uint32, s string) []byte { return ebml(id, []byte(s)) }

func webmHeader(docType string) []byte {
	return ebml(ebmlHeaderID, ebmlUint(0x4286, 1), ebmlStr(ebmlDocType, docType))
}

// mkvTrackEntry returns an audio TrackEntry.
func mkvAudioTrack(number uint64, codec string, private []byte, rate float64, channels, depth uint64) []byte {
	audio := [][]byte{ebmlFloat(mkvSamplingFreq, rate), ebmlUint(mkvChannels, channels)}
	if depth > 0 {
		audio = append(audio, ebmlUint(mkvBitDepth, depth))
	}
	return ebml(mkvTrackEntry,
		ebmlUint(mkvTrackNumber, number),
		ebmlUint(mkvTrackType, 2),
		ebmlStr(mkvCodecID, codec),
		ebml(mkvCodecPrivate, private),
		ebml(mkvAudio, audio...))
}

// opusHead is an OpusHead with the given pre-skip.
func opusHead(preSkip uint16) []byte {
	h := []byte("OpusHead\x01\x01\x00\x00\x80\xbb\x00\x00\x00\x00\x00")
	binary.LittleEndian.PutUint16(h[10:], preSkip)
	return h
}

// mkvBlock returns a SimpleBlock's body: track, timecode, flags and
// frames, Xiph-laced when there are several.
func mkvBlockBody(track byte, tc int16, frames ...[]byte) []byte {
	b := []byte{0x80 | track, byte(uint16(tc) >> 8), byte(tc), 0x80}
	if len(frames) > 1 {
		b[3] |= 1 << 1 // Xiph lacing
		b = append(b, byte(len(frames)-1))
		for _, f := range frames[:len(frames)-1] {
			n := len(f)
			for ; n >= 255; n -= 255 {
				b = append(b, 255)
			}
			b = append(b, byte(n))
		}
	}
	return cat(b, cat(frames...))
}

func simpleBlock(track byte, tc int16, frames ...[]byte) []byte {
	return ebml(mkvSimpleBlock, mkvBlockBody(track, tc, frames...))
}

// opusPacket returns a packet with TOC byte toc (and more bytes).
func opusPacket(toc ...byte) []byte { return append(toc, make([]byte, 40)...) }

// webmDoc assembles a WebM file: header, Segment with Info (claiming
// claimed ms) and Tracks, then the clusters.
func webmDoc(claimed float64, tracks []byte, clusters ...[]byte) []byte {
	return cat(webmHeader("webm"), ebml(mkvSegment, cat(
		ebml(mkvInfo, ebmlUint(mkvTimecodeScale, 1000000), ebmlFloat(0x4489, claimed)),
		ebml(mkvTracks, tracks),
		cat(clusters...))))
}

// opusClusters returns n clusters of 50 blocks of one 20 ms Opus packet
// (1 s each).
func opusClusters(n int, live bool) [][]byte {
	var out [][]byte
	for c := 0; c < n; c++ {
		parts := [][]byte{ebmlUint(mkvTimecode, uint64(c*1000))}
		for i := 0; i < 50; i++ {
			parts = append(parts, simpleBlock(1, int16(i*20), opusPacket(0xF8)))
		}
		if live {
			out = append(out, ebmlLive(mkvCluster, parts...))
		} else {
			out = append(out, ebml(mkvCluster, parts...))
		}
	}
	return out
}

// vorbisPrivate returns a Xiph-laced CodecPrivate whose identification
// header has blocksize_1 = 2048.
func vorbisPrivate() []byte {
	id := make([]byte, 30)
	copy(id, "\x01vorbis")
	id[11] = 1                                    // channels
	binary.LittleEndian.PutUint32(id[12:], 44100) // rate
	id[28] = 0xB8                                 // blocksize_0 256, blocksize_1 2048
	id[29] = 1
	return cat([]byte{2, 30, 10}, id, make([]byte, 10+20))
}

// webmCases is TestProbeWebM's table; FuzzProbeWebM is seeded from it.
func webmCases(t testing.TB) []formatCase {
	opusTrack := mkvAudioTrack(1, "A_OPUS", opusHead(312), 48000, 1, 0)
	opus := func(samples int64) Info {
		return Info{Format: WebM, Codec: "opus", SampleRate: 48000, Channels: 1, HasSamples: samples > 0, Duration: framesDuration(samples, 48000)}
	}
	oneSec := webmDoc(1000, opusTrack, opusClusters(1, false)...)

	fixture := formatFixture(t, "webm_opus.webm")
	cluster := bytes.Index(fixture, ebmlID(mkvCluster))
	forged := bytes.Clone(fixture)
	if i := bytes.Index(forged, []byte{0x44, 0x89, 0x88}); i < 0 {
		t.Fatal("no Duration element in the fixture")
	} else {
		binary.BigEndian.PutUint64(forged[i+3:], math.Float64bits(3600e3)) // claims an hour
	}
	opus20 := framesDuration(960, 48000)

	return []formatCase{
		// fixtures made by ffmpeg (testdata/README.md)
		{name: "ffmpeg Opus 1 s", in: fixture, want: opus(48000), tol: opus20},
		{name: "ffmpeg Opus 0.3 s", in: formatFixture(t, "webm_opus_short.webm"), want: opus(14400), tol: opus20},
		{name: "ffmpeg Vorbis", in: formatFixture(t, "webm_vorbis.mka"),
			want: Info{Format: WebM, Codec: "vorbis", SampleRate: 44100, Channels: 1, HasSamples: true, Duration: time.Second}, tol: 24 * time.Millisecond},
		{name: "ffmpeg AAC (17 frames, the first priming)", in: formatFixture(t, "webm_aac.mka"),
			want: Info{Format: WebM, Codec: "aac", SampleRate: 16000, Channels: 1, HasSamples: true, Duration: framesDuration(17*1024, 16000)}, tol: 64 * time.Millisecond},
		{name: "Duration element forged to an hour", in: forged, want: opus(48000), tol: opus20},
		{name: "tracks but no clusters", in: fixture[:cluster], want: Info{Format: WebM, Codec: "opus", SampleRate: 48000, Channels: 1}},
		{name: "cut mid-file", in: fixture[:len(fixture)/2], want: opus(20000), tol: 8 * opus20},

		// crafted
		{name: "50 × 20 ms less pre-skip", in: oneSec, want: opus(48000 - 312)},
		{name: "Duration claims 10 s", in: webmDoc(10000, opusTrack, opusClusters(1, false)...), want: opus(48000 - 312)},
		{name: "Duration claims 0.1 s", in: webmDoc(100, opusTrack, opusClusters(2, false)...), want: opus(96000 - 312)},
		{name: "live: unknown-size Segment and Clusters", in: cat(webmHeader("webm"), ebmlLive(mkvSegment,
			ebml(mkvInfo, ebmlUint(mkvTimecodeScale, 1000000)),
			ebml(mkvTracks, opusTrack),
			cat(opusClusters(3, true)...),
			ebml(0x1C53BB6B), // Cues end the last Cluster
		)), want: opus(3*48000 - 312)},
		{name: "laced packets and TOC codes", in: webmDoc(0, opusTrack, ebml(mkvCluster,
			ebmlUint(mkvTimecode, 0),
			simpleBlock(1, 0, opusPacket(0xF8), opusPacket(0xF9), opusPacket(0xFB, 0x03)),                                 // Xiph: 960+1920+2880
			ebml(mkvSimpleBlock, []byte{0x81, 0, 100, 0x80 | 3<<1, 1, 0x82}, opusPacket(0x18)[:2], opusPacket(0x80)[:41]), // EBML lacing: 2880+120
			ebml(mkvSimpleBlock, []byte{0x81, 0, 200, 0x80 | 2<<1, 1}, opusPacket(0x00)[:10], opusPacket(0x78)[:10]),      // fixed: 480+960
		)), want: opus(960 + 1920 + 2880 + 2880 + 120 + 480 + 960 - 312)},
		{name: "BlockGroup with DiscardPadding", in: webmDoc(0, opusTrack, ebml(mkvCluster,
			ebmlUint(mkvTimecode, 0),
			simpleBlock(1, 0, opusPacket(0xF8)),
			ebml(mkvBlockGroup, ebml(mkvBlock, mkvBlockBody(1, 20, opusPacket(0xF8))), ebmlUint(mkvDiscardPadding, 10000000)), // 10 ms
		)), want: opus(2*960 - 480 - 312)},
		{name: "forged DiscardPadding on every block: only the last block's counts", in: webmDoc(0, opusTrack, ebml(mkvCluster,
			ebmlUint(mkvTimecode, 0),
			ebml(mkvBlockGroup, ebml(mkvBlock, mkvBlockBody(1, 0, opusPacket(0xF8))), ebmlUint(mkvDiscardPadding, 900000000)),
			ebml(mkvBlockGroup, ebml(mkvBlock, mkvBlockBody(1, 20, opusPacket(0xF8))), ebmlUint(mkvDiscardPadding, 900000000)),
			ebml(mkvBlockGroup, ebml(mkvBlock, mkvBlockBody(1, 40, opusPacket(0xF8))), ebmlUint(mkvDiscardPadding, 10000000)), // 10 ms
		)), want: opus(3*960 - 480 - 312)},
		{name: "forged DiscardPadding longer than its block trims the block at most", in: webmDoc(0, opusTrack, ebml(mkvCluster,
			ebmlUint(mkvTimecode, 0),
			simpleBlock(1, 0, opusPacket(0xF8)),
			simpleBlock(1, 20, opusPacket(0xF8)),
			ebml(mkvBlockGroup, ebml(mkvBlock, mkvBlockBody(1, 40, opusPacket(0xF8))), ebmlUint(mkvDiscardPadding, 900000000)),
		)), want: opus(3*960 - 960 - 312)},
		{name: "blocks of another track are not counted", in: webmDoc(0, cat(opusTrack, ebml(mkvTrackEntry, ebmlUint(mkvTrackNumber, 2), ebmlUint(mkvTrackType, 1))),
			ebml(mkvCluster, ebmlUint(mkvTimecode, 0), simpleBlock(1, 0, opusPacket(0xF8)), simpleBlock(2, 0, opusPacket(0x18)), simpleBlock(2, 0, opusPacket(0x18)))),
			want: opus(960 - 312)},
		{name: "PCM: block bytes", in: webmDoc(0, mkvAudioTrack(1, "A_PCM/INT/LIT", nil, 16000, 2, 16),
			ebml(mkvCluster, ebmlUint(mkvTimecode, 0), simpleBlock(1, 0, make([]byte, 32000)), simpleBlock(1, 500, make([]byte, 32000)))),
			want: Info{Format: WebM, Codec: "pcm_s16le", SampleRate: 16000, Channels: 2, HasSamples: true, Duration: time.Second}},
		{name: "AAC: 1024 samples a frame", in: webmDoc(0, mkvAudioTrack(1, "A_AAC", []byte{0x14, 0x08}, 16000, 1, 0),
			ebml(mkvCluster, ebmlUint(mkvTimecode, 0), simpleBlock(1, 0, make([]byte, 50), make([]byte, 50)), simpleBlock(1, 128, make([]byte, 50)))),
			want: Info{Format: WebM, Codec: "aac", SampleRate: 16000, Channels: 1, HasSamples: true, Duration: framesDuration(3*1024, 16000)}},
		{name: "Vorbis: timestamps, last BlockDuration", in: webmDoc(0, mkvAudioTrack(1, "A_VORBIS", vorbisPrivate(), 44100, 1, 0),
			ebml(mkvCluster, ebmlUint(mkvTimecode, 0), simpleBlock(1, 0, make([]byte, 50)), simpleBlock(1, 20, make([]byte, 50)),
				ebml(mkvBlockGroup, ebml(mkvBlock, mkvBlockBody(1, 40, make([]byte, 50))), ebmlUint(mkvBlockDuration, 10)))),
			want: Info{Format: WebM, Codec: "vorbis", SampleRate: 44100, Channels: 1, HasSamples: true, Duration: 50 * time.Millisecond}},
		{name: "Vorbis: forged timestamps are capped by block sizes", in: webmDoc(0, mkvAudioTrack(1, "A_VORBIS", vorbisPrivate(), 44100, 1, 0),
			ebml(mkvCluster, ebmlUint(mkvTimecode, 0), simpleBlock(1, 0, make([]byte, 50))),
			ebml(mkvCluster, ebmlUint(mkvTimecode, 3600000), simpleBlock(1, 0, make([]byte, 50)))),
			want: Info{Format: WebM, Codec: "vorbis", SampleRate: 44100, Channels: 1, HasSamples: true, Duration: framesDuration(2*1024, 44100)}},
		{name: "no audio track", in: webmDoc(0, ebml(mkvTrackEntry, ebmlUint(mkvTrackNumber, 1), ebmlUint(mkvTrackType, 1)),
			ebml(mkvCluster, ebmlUint(mkvTimecode, 0), simpleBlock(1, 0, opusPacket(0xF8)))),
			want: Info{Format: WebM}},
		{name: "Matroska DocType", in: cat(webmHeader("matroska"), oneSec[len(webmHeader("webm")):]), want: opus(48000 - 312)},
		{name: "cut inside an element size", in: cat(webmHeader("webm"), ebmlID(mkvSegment), []byte{0x01, 0x00}), want: Info{Format: WebM}},
		{name: "huge Void at the top level", in: cat(oneSec, ebmlID(0xEC), []byte{0x01, 0x0F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}), want: opus(48000 - 312)},
		{name: "child overruns its parent", in: webmDoc(0, opusTrack, cat(ebmlID(mkvCluster), []byte{0x81}, ebmlID(mkvSimpleBlock), []byte{0x01, 0x0F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})),
			code: tollgate.CodeUnsupportedAudioFormat},
		{name: "garbage after the magic", in: cat(ebmlID(ebmlHeaderID), []byte{0x00, 0x00, 0x00}, bytes.Repeat([]byte("garbage"), 100)), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "EBML header of unknown size", in: cat(ebmlID(ebmlHeaderID), []byte{0xFF}, ebml(mkvSegment)), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "foreign DocType", in: cat(webmHeader("mkv3d"), ebml(mkvSegment)), code: tollgate.CodeUnsupportedAudioFormat},
		{name: "unknown-size Tracks", in: cat(webmHeader("webm"), ebmlLive(mkvSegment, ebmlLive(mkvTracks, opusTrack))), code: tollgate.CodeUnsupportedAudioFormat},
	}
}

func TestProbeWebM(t *testing.T) { testFormatCases(t, webmCases(t)) }

func FuzzProbeWebM(f *testing.F) {
	for _, c := range webmCases(f) {
		f.Add(c.in)
	}
	for _, b := range formatFixtures(f, "webm_") {
		f.Add(b)
	}
	opusTrack := mkvAudioTrack(1, "A_OPUS", opusHead(312), 48000, 1, 0)
	f.Add(webmDoc(1000, opusTrack, opusClusters(1, true)...))
	f.Add(webmDoc(0, mkvAudioTrack(1, "A_VORBIS", vorbisPrivate(), 44100, 1, 0),
		ebml(mkvCluster, ebmlUint(mkvTimecode, 0), simpleBlock(1, 0, make([]byte, 5), make([]byte, 3)),
			ebml(mkvBlockGroup, ebml(mkvBlock, mkvBlockBody(1, 40, make([]byte, 5))), ebmlUint(mkvBlockDuration, 10)))))
	f.Add(webmDoc(0, mkvAudioTrack(1, "A_PCM/INT/LIT", nil, 16000, 2, 16), ebml(mkvCluster, simpleBlock(1, 0, make([]byte, 64)))))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzFormat(t, in)
	})
}

func BenchmarkProbeWebM(b *testing.B) {
	// 120 s of 20 ms Opus packets in 1 s clusters (~800 KB)
	opusTrack := mkvAudioTrack(1, "A_OPUS", opusHead(312), 48000, 1, 0)
	benchmarkProbe(b, webmDoc(0, opusTrack, opusClusters(120, false)...))
}

// TestWebMForgedTimecodeScale: block timestamps are read with the
// TimecodeScale, which a decoder does not need; a forged tiny scale must
// not make the audio (nearly) free. AAC frames and Vorbis packets (their
// modes read from the setup header in CodecPrivate) are counted, so the
// scale changes nothing.
func TestWebMForgedTimecodeScale(t *testing.T) {
	forge := func(name string) []byte {
		b := bytes.Clone(formatFixture(t, name))
		i := bytes.Index(b, ebmlID(mkvTimecodeScale))
		if i < 0 {
			t.Fatalf("%s: no TimecodeScale", name)
		}
		n := int(b[i+3] & 0x7F) // a one-byte size: 0x80 | length
		if n < 1 || n > 8 {
			t.Fatalf("%s: TimecodeScale size byte %#x", name, b[i+3])
		}
		for j := 0; j < n-1; j++ {
			b[i+4+j] = 0
		}
		b[i+3+n] = 1 // 1 ns per tick instead of 1 ms
		return b
	}
	for _, tc := range []struct {
		fixture string
		min     time.Duration
	}{
		{"webm_aac.mka", framesDuration(16*960, 16000)}, // 17 frames, the first priming
		{"webm_vorbis.mka", 990 * time.Millisecond},     // of 1 s
	} {
		honest, err := Probe(bytes.NewReader(formatFixture(t, tc.fixture)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Probe(bytes.NewReader(forge(tc.fixture)), Options{})
		if err != nil {
			t.Fatalf("%s forged: %v", tc.fixture, err)
		}
		if got.Duration < tc.min || got.Duration > honest.Duration {
			t.Errorf("%s with TimecodeScale 1: %v; want between %v and the honest %v", tc.fixture, got.Duration, tc.min, honest.Duration)
		}
		t.Logf("%s: honest %v, forged scale %v", tc.fixture, honest.Duration, got.Duration)
	}
}
