package write

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/transform"
)

// ListedMeeting is a meetings row observed outside any poll: the day's
// meetings list.
type ListedMeeting struct {
	transform.Meeting
	// ObservedAt is when the list was fetched. Zero means unknown: older
	// than any observation, so the row is inserted when missing but never
	// overwrites one written from a known instant.
	ObservedAt time.Time
}

// UpsertMeetings writes meetings of the meetings list inside the caller's
// transaction, by the rules a poll's meeting row follows (see Write): a row
// changes only when a value differs, a value the list lacks never replaces a
// stored one, and an observation older than the row's leaves it alone. It
// returns the rows inserted and updated. Meeting ids must be distinct.
func UpsertMeetings(ctx context.Context, tx pgx.Tx, ms []ListedMeeting) (inserted, updated int, err error) {
	if len(ms) == 0 {
		return 0, 0, nil
	}
	rows := make([]transform.Meeting, len(ms))
	obs := make([]*time.Time, len(ms))
	for i := range ms {
		rows[i] = ms[i].Meeting
		if !ms[i].ObservedAt.IsZero() {
			obs[i] = &ms[i].ObservedAt
		}
	}
	var (
		keys    []string
		ins     []int64
		upd     []int64
		elapsed int64
	)
	args := meetingArgs(rows, obs, make([]*string, len(ms)))
	if err := tx.QueryRow(ctx, sqlMeetings, args...).Scan(&keys, &ins, &upd, &elapsed); err != nil {
		return 0, 0, newDBError(TableMeetings, err)
	}
	for i := range keys {
		inserted += int(ins[i])
		updated += int(upd[i])
	}
	return inserted, updated, nil
}
