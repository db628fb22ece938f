package pgdriver

import (
	"encoding/json"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// sampleMetadata is what a written poll's message carries.
func sampleMetadata() message.Metadata {
	return message.Metadata{
		"race_id": "8a1b2c3d-0000-4000-8000-000000000001", "poll_id": "8a1b2c3d@20261202T193510.123456789Z",
		"correlation_id": "8a1b2c3d@20261202T193510.123456789Z", "requested_at": "2026-12-02T19:35:10.123456789Z",
		"observed_at": "2026-12-02T19:35:10.223456789Z", "api_generated_at": "2026-12-02T19:35:09Z",
		"content_encoding": "gzip", "stage_fetch_started": "2026-12-02T19:35:10.123556789Z",
		"stage_fetch_ended": "2026-12-02T19:35:10.223456789Z", "stage_write_started": "2026-12-02T19:35:10.230000001Z",
		"stage_write_ended": "2026-12-02T19:35:10.236000001Z", "_watermill_message_uuid": "01HZX0000000000000000000",
	}
}

func TestMetadataReadsAndWritesWhatEncodingJSONDid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		md   message.Metadata
	}{
		{"a written poll's", sampleMetadata()},
		{"none", message.Metadata{}},
		{"markup and quotes", message.Metadata{"reason": `<b>"bad" & 'worse'</b>`, "last_error": "line\nbreak\ttab"}},
		{"invalid UTF-8", message.Metadata{"reason": "caf\xe9", "k\xff": "v"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, err := encodeMetadata(tc.md)
			require.NoError(t, err)
			theirs, err := json.Marshal(tc.md)
			require.NoError(t, err)

			var fromOurs message.Metadata
			require.NoError(t, json.Unmarshal(ours, &fromOurs), "encoding/json reads what is written now")
			got, err := decodeMetadata(theirs)
			require.NoError(t, err, "what encoding/json wrote is read now")
			require.Equal(t, fromOurs, got, "both ways give the same metadata")
			var want message.Metadata
			require.NoError(t, json.Unmarshal(theirs, &want))
			require.Equal(t, want, got)
		})
	}
}

func TestMetadataDecodeKeepsEncodingJSONsLeniency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     message.Metadata
	}{
		{"a repeated key keeps its last value", `{"race_id":"a","race_id":"b"}`, message.Metadata{"race_id": "b"}},
		{"null is no metadata", `null`, nil},
		{"an escaped lone surrogate becomes U+FFFD", `{"reason":"\ud800"}`, message.Metadata{"reason": "\ufffd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeMetadata([]byte(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	_, err := decodeMetadata([]byte(`{"race_id":1}`))
	require.ErrorContains(t, err, "metadata", "a value that is not a string is refused, as before")
}

func TestMetadataOfNoneIsAnEmptyObject(t *testing.T) {
	t.Parallel()
	got, err := encodeMetadata(nil)
	require.NoError(t, err)
	require.Equal(t, "{}", string(got))
}

func BenchmarkMetadata(b *testing.B) {
	md := sampleMetadata()
	data, err := json.Marshal(md)
	require.NoError(b, err)
	b.Run("encode/encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(md)
		}
	})
	b.Run("encode/v2", func(b *testing.B) {
		for b.Loop() {
			_, _ = encodeMetadata(md)
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		for b.Loop() {
			var out message.Metadata
			_ = json.Unmarshal(data, &out)
		}
	})
	b.Run("decode/v2", func(b *testing.B) {
		for b.Loop() {
			_, _ = decodeMetadata(data)
		}
	})
}
