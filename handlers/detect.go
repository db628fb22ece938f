package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/detect"
)

// KeyAlertID is the alert id (its idempotency key) on an alert message.
const KeyAlertID = "alert_id"

// DetectError is a failed detection; the poll's data are stored, its alerts
// are not.
type DetectError struct{ StageError }

// Unwrap exposes the stage error and its cause.
func (e *DetectError) Unwrap() error { return &e.StageError }

// Detect returns the detect handler: race.written → race.processed, and the
// alerts the poll fires to alertsTopic through pub (the driver's handler
// publisher, so on PostgreSQL they commit with the hand-off). It judges the
// written poll inside a transaction of begin (DetectPoll) and passes the
// poll's result on, counting the alerts it stored. A redelivered poll
// stores nothing again but publishes its alerts again, with the same
// message ids: at least once.
func Detect(begin BeginFunc, cfg alerts.Config, alertsTopic string, pub message.Publisher) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		raceID, pollID := msg.Metadata.Get(KeyRaceID), msg.Metadata.Get(KeyPollID)
		var p outcomePayload
		if err := json.Unmarshal(msg.Payload, &p); err != nil {
			return nil, detectErr(raceID, pollID, KindDecode, false, err)
		}
		observed, ok := parseTime(msg.Metadata.Get(KeyObservedAt))
		if !ok {
			return nil, detectErr(raceID, pollID, KindMetadata, false,
				fmt.Errorf("missing or bad %s %q", KeyObservedAt, msg.Metadata.Get(KeyObservedAt)))
		}
		ctx := msg.Context()
		tx, err := begin(msg)
		if err != nil {
			return nil, detectErr(raceID, pollID, KindBegin, !errors.Is(err, context.Canceled), err)
		}
		res, err := DetectPoll(ctx, tx, cfg, raceID, pollID, observed)
		if err != nil {
			_ = tx.Rollback(ctx)
			return nil, err
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, detectErr(raceID, pollID, KindCommit, !errors.Is(err, context.Canceled), err)
		}
		if len(res.Fired) > 0 {
			out, err := AlertMessages(msg, res.Fired)
			if err != nil {
				return nil, err
			}
			if err := pub.Publish(alertsTopic, out...); err != nil {
				return nil, detectErr(raceID, pollID, KindPublish, true, err)
			}
		}
		p.Rows.Alerts = res.Inserted
		payload, err := json.Marshal(p)
		if err != nil {
			return nil, detectErr(raceID, pollID, KindEncode, false, err)
		}
		return []*message.Message{next(msg, payload)}, nil
	}
}

// DetectPoll judges the poll of raceID observed at observedAt, which must
// already be written in tx, and stores the alerts it fires (stages/detect):
// the detect stage's one path to the alert rules, which replay takes too,
// right after WritePoll in the same transaction. A failure is a
// *DetectError (retryable when the database failed); a cancelled context
// is returned as it is.
func DetectPoll(ctx context.Context, tx pgx.Tx, cfg alerts.Config, raceID, pollID string, observedAt time.Time) (detect.Result, error) {
	res, err := detect.Poll(ctx, tx, cfg, raceID, observedAt)
	if err == nil {
		return res, nil
	}
	var de *detect.Error
	kind := KindDatabase
	if errors.As(err, &de) {
		kind = de.Op
	}
	return detect.Result{}, detectErr(raceID, pollID, kind, !errors.Is(err, detect.ErrNoRace), err)
}

// AlertMessages are the alert messages of fired alerts, for the alerts
// topic: the payload is the alert as the webhook receives it (JSON of
// detect.Fired), the id is derived from the alert's, so a backend that drops
// repeated ids drops a republished alert, and the poll's metadata is kept
// for tracing.
func AlertMessages(poll *message.Message, fired []detect.Fired) ([]*message.Message, error) {
	out := make([]*message.Message, 0, len(fired))
	for _, f := range fired {
		payload, err := json.Marshal(f)
		if err != nil {
			return nil, fmt.Errorf("handlers: encode alert %s: %w", f.ID, err)
		}
		m := next(poll, payload)
		m.UUID = uuid.NewSHA1(uuid.NameSpaceURL, []byte("raceflow:alert-message:"+f.ID)).String()
		m.Metadata.Set(KeyAlertID, f.ID)
		out = append(out, m)
	}
	return out, nil
}

// DecodeAlert reads an alert message's payload.
func DecodeAlert(msg *message.Message) (detect.Fired, error) {
	var f detect.Fired
	if err := json.Unmarshal(msg.Payload, &f); err != nil {
		return detect.Fired{}, fmt.Errorf("handlers: decode alert %s: %w", msg.UUID, err)
	}
	if f.ID == "" {
		return detect.Fired{}, fmt.Errorf("handlers: alert %s has no id", msg.UUID)
	}
	return f, nil
}

func detectErr(raceID, pollID, kind string, retryable bool, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &DetectError{StageError{Stage: StageDetect, RaceID: raceID, PollID: pollID, Kind: kind, Retryable: retryable, Err: err}}
}
