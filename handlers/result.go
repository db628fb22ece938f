package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Poll outcomes.
const (
	StatusSuccess = "success"
	StatusSkipped = "skipped"
	StatusFailed  = "failed"
)

// ProcessResult is what one poll of one race came to.
type ProcessResult struct {
	RaceID     string     `json:"race_id"`
	PollID     string     `json:"poll_id"`
	Status     string     `json:"status"`
	RaceStatus string     `json:"race_status,omitempty"` // open|closed|interim|final|abandoned, when known
	Replay     bool       `json:"replay,omitempty"`
	Timings    Timings    `json:"timings"`
	Rows       RowCounts  `json:"rows"`
	Error      *ErrorInfo `json:"error,omitempty"`
}

// Timings are in milliseconds. QueueMS is the time spent waiting between
// stages; TotalMS runs from the request to the end of the last stage.
type Timings struct {
	FetchMS     float64 `json:"fetch_ms"`
	TransformMS float64 `json:"transform_ms"`
	WriteMS     float64 `json:"write_ms"`
	DetectMS    float64 `json:"detect_ms"`
	QueueMS     float64 `json:"queue_ms"`
	TotalMS     float64 `json:"total_ms"`
}

// RowCounts are rows inserted or changed per table.
type RowCounts struct {
	Meetings  int `json:"meetings"`
	Races     int `json:"races"`
	Entrants  int `json:"entrants"`
	RacePools int `json:"race_pools"`
	MoneyFlow int `json:"money_flow"`
	Odds      int `json:"odds"`
	Results   int `json:"results"`
	// Alerts counts the alerts the poll stored (the detect stage).
	Alerts int `json:"alerts"`
}

// ErrorInfo describes why a poll did not succeed.
type ErrorInfo struct {
	Stage     string `json:"stage"`
	Kind      string `json:"kind"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

// StageError is a failure of one stage of one poll (or, without race and
// poll ids, of a batch of polls). FetchError,
// TransformError and WriteError are its stage-specific forms; errors.As
// finds the cause through them.
type StageError struct {
	Stage     string
	RaceID    string
	PollID    string
	Kind      string
	Retryable bool
	Err       error
}

func (e *StageError) Error() string {
	if e.RaceID == "" && e.PollID == "" {
		return fmt.Sprintf("%s: %s: %v", e.Stage, e.Kind, e.Err)
	}
	return fmt.Sprintf("%s race %s poll %s: %s: %v", e.Stage, e.RaceID, e.PollID, e.Kind, e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

// FetchError is a failed fetch.
type FetchError struct{ StageError }

// TransformError is a payload the transform could not use.
type TransformError struct{ StageError }

// WriteError is a failed database write; the poll's writes were rolled back.
type WriteError struct{ StageError }

// Unwrap exposes the stage error and its cause.
func (e *FetchError) Unwrap() error { return &e.StageError }

// Unwrap exposes the stage error and its cause.
func (e *TransformError) Unwrap() error { return &e.StageError }

// Unwrap exposes the stage error and its cause.
func (e *WriteError) Unwrap() error { return &e.StageError }

// Err turns a failed result back into its typed error, nil on success.
func (r ProcessResult) Err() error {
	if r.Error == nil {
		return nil
	}
	se := StageError{Stage: r.Error.Stage, RaceID: r.RaceID, PollID: r.PollID, Kind: r.Error.Kind,
		Retryable: r.Error.Retryable, Err: errors.New(r.Error.Message)}
	switch r.Error.Stage {
	case StageFetch:
		return &FetchError{se}
	case StageTransform:
		return &TransformError{se}
	case StageDetect:
		return &DetectError{se}
	default:
		return &WriteError{se}
	}
}

// Skip is returned by a handler when the poll should end "skipped" rather
// than fail: the race is unknown (404) or the API stayed unreachable.
type Skip struct {
	Stage, Kind string
	Retryable   bool
	Err         error
}

func (s *Skip) Error() string { return fmt.Sprintf("%s skipped (%s): %v", s.Stage, s.Kind, s.Err) }
func (s *Skip) Unwrap() error { return s.Err }

// outcomePayload is the body of race.processed; timings travel in metadata.
type outcomePayload struct {
	Status     string     `json:"status"`
	RaceStatus string     `json:"race_status,omitempty"`
	Rows       RowCounts  `json:"rows"`
	Error      *ErrorInfo `json:"error,omitempty"`
}

// NewResultMessage builds a race.processed message for the poll in.
func NewResultMessage(in *message.Message, status, raceStatus string, rows RowCounts, info *ErrorInfo) (*message.Message, error) {
	payload, err := json.Marshal(outcomePayload{Status: status, RaceStatus: raceStatus, Rows: rows, Error: info})
	if err != nil {
		return nil, fmt.Errorf("handlers: encode result: %w", err)
	}
	return next(in, payload), nil
}

// DecodeResult reads a race.processed message into a ProcessResult,
// computing the timings from the stage instants in its metadata.
func DecodeResult(msg *message.Message, now time.Time) (ProcessResult, error) {
	var p outcomePayload
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return ProcessResult{}, fmt.Errorf("handlers: decode result %s: %w", msg.UUID, err)
	}
	md := msg.Metadata
	r := ProcessResult{
		RaceID: md.Get(KeyRaceID), PollID: md.Get(KeyPollID),
		Status: p.Status, RaceStatus: p.RaceStatus, Rows: p.Rows, Error: p.Error,
		Replay: md.Get(KeyReplay) == "true",
	}
	r.Timings = timingsFrom(md, now)
	return r, nil
}

func msOf(md message.Metadata, key string) float64 {
	v, err := strconv.ParseFloat(md.Get(key), 64)
	if err != nil {
		return 0
	}
	return v
}

// timingsFrom: stage times from <stage>_ms; queue time is everything between
// the request and the last stage's end not spent inside a stage.
func timingsFrom(md message.Metadata, now time.Time) Timings {
	t := Timings{
		FetchMS:     msOf(md, msKey(StageFetch)),
		TransformMS: msOf(md, msKey(StageTransform)),
		WriteMS:     msOf(md, msKey(StageWrite)),
		DetectMS:    msOf(md, msKey(StageDetect)),
	}
	stages := t.FetchMS + t.TransformMS + t.WriteMS + t.DetectMS
	req, ok := parseTime(md.Get(KeyRequestedAt))
	if !ok {
		t.TotalMS = stages
		return t
	}
	end := now
	for _, st := range slices.Backward(Stages()) {
		if e, ok := parseTime(md.Get(endKey(st))); ok {
			end = e
			break
		}
	}
	t.TotalMS = float64(end.Sub(req)) / float64(time.Millisecond)
	t.QueueMS = t.TotalMS - stages
	if t.QueueMS < 0 {
		t.QueueMS = 0
	}
	return t
}
