package pgdriver

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// metadataJSON are the options a message's metadata is encoded and decoded
// with: encoding/json/v2 (from the module that mirrors it until go.mod's Go
// version has it), which reads and writes a map of strings several times
// faster than encoding/json; every message of every hop takes both. The
// options keep what encoding/json did with odd input: invalid UTF-8 becomes
// U+FFFD and a repeated key keeps its last value, so rows written by
// earlier releases read as they did.
var metadataJSON = jsonv2.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// encodeMetadata is the JSON object of md's keys and values.
func encodeMetadata(md message.Metadata) ([]byte, error) {
	if md == nil {
		md = message.Metadata{} // an object, as encoding/json wrote it, not null
	}
	return jsonv2.Marshal(md, metadataJSON)
}

// decodeMetadata reads a JSON object of strings (or null) into a fresh map.
func decodeMetadata(data []byte) (message.Metadata, error) {
	var md message.Metadata
	if err := jsonv2.Unmarshal(data, &md, metadataJSON); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return md, nil
}
