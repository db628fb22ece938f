package write

import (
	"errors"
	"fmt"
	"time"

	"github.com/raceflow/raceflow/stages/transform"
)

// validate rejects snapshots whose stored result would be ill-defined.
func validate(s transform.RaceSnapshot) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if s.RaceID == "" {
		bad("empty race_id")
	}
	if s.ObservedAt.IsZero() {
		bad("zero observed_at")
	}
	if s.Race.RaceID != s.RaceID {
		bad("race.race_id %q differs from the snapshot's %q", s.Race.RaceID, s.RaceID)
	}
	if s.Meeting != nil && s.Meeting.MeetingID != s.Race.MeetingID {
		bad("meeting %q is not the race's meeting %q", s.Meeting.MeetingID, s.Race.MeetingID)
	}
	if s.RacePools != nil && s.RacePools.RaceID != s.RaceID {
		bad("race_pools.race_id %q differs from %q", s.RacePools.RaceID, s.RaceID)
	}
	if s.Results != nil && s.Results.RaceID != s.RaceID {
		bad("results.race_id %q differs from %q", s.Results.RaceID, s.RaceID)
	}
	seenEntrant := make(map[string]bool, len(s.Entrants))
	for _, e := range s.Entrants {
		if e.RaceID != s.RaceID || e.EntrantID == "" || seenEntrant[e.EntrantID] {
			bad("entrant %q: empty, duplicate or of race %q", e.EntrantID, e.RaceID)
		}
		seenEntrant[e.EntrantID] = true
	}
	type mfKey struct {
		entrant        string
		polling, event int64
	}
	seenMF := make(map[mfKey]bool, len(s.MoneyFlow))
	for _, m := range s.MoneyFlow {
		k := mfKey{m.EntrantID, m.PollingTimestamp.UnixMicro(), m.EventTimestamp.UnixMicro()}
		if m.RaceID != s.RaceID || m.EntrantID == "" || seenMF[k] {
			bad("money_flow %q@%s: empty, duplicate or of race %q", m.EntrantID, m.PollingTimestamp.Format(time.RFC3339Nano), m.RaceID)
		}
		seenMF[k] = true
	}
	type oddsKey struct {
		entrant, typ string
		at           int64
	}
	seenOdds := make(map[oddsKey]bool, len(s.Odds))
	for _, o := range s.Odds {
		k := oddsKey{o.EntrantID, o.Type, o.EventTimestamp.UnixMicro()}
		if o.RaceID != s.RaceID || o.EntrantID == "" || seenOdds[k] {
			bad("odds %q/%s@%s: empty, duplicate or of race %q", o.EntrantID, o.Type, o.EventTimestamp.Format(time.RFC3339Nano), o.RaceID)
		}
		seenOdds[k] = true
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidSnapshot, errors.Join(errs...))
}
