package baseline_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nztab"
)

// listBody is a meetings-list page holding the meetings.
func listBody(t *testing.T, ms ...nztab.Meeting) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"header": map[string]any{"title": "Race Meetings"},
		"data": map[string]any{"meetings": ms}})
	require.NoError(t, err)
	return b
}

func TestStoredResponseLoadsBackAsFetchedUntilPruned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	at := time.Date(2025, 7, 17, 6, 0, 0, 123456000, time.UTC)
	resp := baseline.Response{Day: "2025-07-17", ObservedAt: at, Pages: [][]byte{
		listBody(t, meeting("m1", "NZ", "T", race("r1", "Open"))),
		listBody(t, meeting("m2", "AUS", "H", race("r2", "Open"))),
	}}
	require.NoError(t, baseline.Store(ctx, db.Pool, resp))
	require.NoError(t, baseline.Store(ctx, db.Pool, resp), "storing the same fetch again is a no-op")
	later := resp
	later.ObservedAt = at.Add(30 * time.Minute)
	require.NoError(t, baseline.Store(ctx, db.Pool, later))

	stored, err := baseline.Stored(ctx, db.Pool, time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, stored, 2)
	require.True(t, stored[0].Equal(at) && stored[1].Equal(later.ObservedAt), "oldest first")
	only, err := baseline.Stored(ctx, db.Pool, at.Add(time.Second), time.Time{})
	require.NoError(t, err)
	require.Len(t, only, 1)

	got, err := baseline.Load(ctx, db.Pool, at)
	require.NoError(t, err)
	require.Equal(t, resp.Day, got.Day)
	require.True(t, got.ObservedAt.Equal(at))
	require.Equal(t, resp.Pages, got.Pages, "byte for byte")

	var packed, raw int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT octet_length(pages[1]), $2::int FROM baseline_responses
		WHERE observed_at = $1`, at, len(resp.Pages[0])).Scan(&packed, &raw))
	require.Less(t, packed, raw, "pages are stored compressed")

	n, err := baseline.Prune(ctx, db.Pool, time.Now().Add(-time.Hour), 1)
	require.NoError(t, err)
	require.Zero(t, n, "nothing was stored an hour ago")
	n, err = baseline.Prune(ctx, db.Pool, time.Now().Add(time.Hour), 1)
	require.NoError(t, err)
	require.Equal(t, int64(2), n, "batches of one until done")
	_, err = baseline.Load(ctx, db.Pool, at)
	require.ErrorIs(t, err, baseline.ErrNoResponse)
}

func TestStoreRefusesAResponseItCouldNotReplay(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	require.ErrorContains(t, baseline.Store(ctx, db.Pool, baseline.Response{Day: "2025-07-17"}), "observation instant")
	require.ErrorContains(t, baseline.Store(ctx, db.Pool, baseline.Response{Day: "17/07", ObservedAt: time.Now()}), "day")
}

func TestDecodeKeepsAMeetingsFirstOccurrenceAcrossPages(t *testing.T) {
	t.Parallel()
	first := meeting("m1", "NZ", "T", race("r1", "Open"))
	moved := first
	moved.Name = "moved to page 2"
	resp := baseline.Response{Day: "2025-07-17", ObservedAt: time.Now(), Pages: [][]byte{
		listBody(t, first), []byte(`{"data":{"meetings":[` + string(mustJSON(t, moved)) + `,{"meeting":""}]}}`),
	}}
	list, err := resp.Decode()
	require.NoError(t, err)
	require.Len(t, list.Meetings, 1)
	require.Equal(t, "M m1", list.Meetings[0].Name)
	require.Len(t, list.Skipped, 1)
	require.Equal(t, 2, list.Skipped[0].Index, "indices count across pages")

	_, err = baseline.Response{Pages: [][]byte{[]byte("not json")}}.Decode()
	var de *nztab.DecodeError
	require.ErrorAs(t, err, &de)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestResponseOfAListWithoutRawPagesReencodesIt(t *testing.T) {
	t.Parallel()
	list := nztab.MeetingsList{Meetings: []nztab.Meeting{meeting("m1", "NZ", "T", race("r1", "Open"))}}
	resp, err := baseline.ResponseOf("2025-07-17", time.Now(), list)
	require.NoError(t, err)
	require.Len(t, resp.Pages, 1)
	back, err := resp.Decode()
	require.NoError(t, err)
	require.Equal(t, list.Meetings, back.Meetings)
}

func TestAListOlderThanARowsObservationDoesNotOverwriteIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	t0 := time.Date(2025, 7, 17, 6, 0, 0, 0, time.UTC)
	apply := func(at time.Time, m nztab.Meeting) baseline.Counts {
		resp := baseline.Response{Day: "2025-07-17", ObservedAt: at, Pages: [][]byte{listBody(t, m)}}
		a, err := baseline.Apply(ctx, db.Pool, resp, baseline.Filter{})
		require.NoError(t, err)
		return a.Counts
	}
	m := meeting("m1", "NZ", "T", race("r1", "Open"))
	require.Equal(t, baseline.Counts{MeetingsInserted: 1, RacesInserted: 1}, apply(t0.Add(time.Hour), m))

	older := m
	older.ToteStatus, older.Races = "Closed", []nztab.MeetingRace{race("r1", "Closed")}
	require.Equal(t, baseline.Counts{}, apply(t0, older), "an older list changes nothing")

	require.Equal(t, baseline.Counts{MeetingsUpdated: 1, RacesUpdated: 1}, apply(t0.Add(2*time.Hour), older))
	var tote, status string
	var seen time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT m.tote_status, r.status, r.observed_at FROM meetings m
		JOIN races r USING (meeting_id)`).Scan(&tote, &status, &seen))
	require.Equal(t, []string{"Closed", "closed"}, []string{tote, status})
	require.True(t, seen.Equal(t0.Add(2*time.Hour)), "the row records the list's instant")
}
