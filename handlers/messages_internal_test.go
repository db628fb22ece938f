package handlers

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/fixtures"
)

// stdCompress compresses with the standard library's gzip at the level
// earlier versions of the flow stored race.fetched bodies with.
func stdCompress(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := stdgzip.NewWriterLevel(&buf, stdgzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	err = zw.Close()
	return buf.Bytes(), err
}

func stdGzip(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := stdCompress(b)
	require.NoError(t, err)
	return out
}

func TestStoredBodiesReadBackWhicheverLibraryCompressedThem(t *testing.T) {
	body := []byte(strings.Repeat(`{"runner":7,"odds":3.45,"name":"Some Horse"},`, 2000))

	ours, err := gzipBytes(body)
	require.NoError(t, err)
	zr, err := stdgzip.NewReader(bytes.NewReader(ours))
	require.NoError(t, err, "the standard library must read what the flow stores")
	plain, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, body, plain)

	gzipped := gzipHeader()
	for name, payload := range map[string][]byte{"stored by this version": ours, "stored by the standard library": stdGzip(t, body)} {
		t.Run(name, func(t *testing.T) {
			got, err := Body(gzipped, payload)
			require.NoError(t, err)
			require.Equal(t, body, got)
		})
	}
}

func TestHostileStoredBodiesFailWithinTheBound(t *testing.T) {
	tooLarge := stdGzip(t, make([]byte, maxBody+1))
	cut := stdGzip(t, []byte(strings.Repeat("a body cut short in transit ", 1000)))
	// A stream whose trailer claims 4 GiB: the size hint must not be trusted.
	lying := bytes.Clone(stdGzip(t, []byte("small")))
	binary.LittleEndian.PutUint32(lying[len(lying)-4:], 1<<32-1)

	for _, tc := range []struct {
		name    string
		payload []byte
		wantErr string
	}{
		{"larger than the bound once decompressed", tooLarge, "exceeds"},
		{"not gzip at all", []byte("this payload is not a gzip stream"), "invalid header"},
		{"cut short", cut[:len(cut)/2], "unexpected EOF"},
		{"a trailer lying about the size", lying, "checksum"},
		{"empty", nil, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Body(gzipHeader(), tc.payload)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestBodyPassesUncompressedPayloadsThrough(t *testing.T) {
	got, err := Body(message.Metadata{}, []byte("plain"))
	require.NoError(t, err)
	require.Equal(t, []byte("plain"), got)
}

func gzipHeader() message.Metadata { return message.Metadata{KeyEncoding: "gzip"} }

// BenchmarkStoredBody times what the fetch stage spends storing a race's
// body, and a replay reading it back, beside the standard library's gzip
// at the same level (the compressor before): a real race event, 400 kB.
func BenchmarkStoredBody(b *testing.B) {
	body := fixtures.Read(b, "race-event-full-response.json")
	stdRead := func(p []byte) ([]byte, error) {
		zr, err := stdgzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	}
	stored, err := gzipBytes(body)
	require.NoError(b, err)
	for _, bc := range []struct {
		name string
		fn   func([]byte) ([]byte, error)
		in   []byte
	}{
		{"compress", gzipBytes, body},
		{"compress/stdlib", stdCompress, body},
		{"decompress", gunzipBytes, stored},
		{"decompress/stdlib", stdRead, stored},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := bc.fn(bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
