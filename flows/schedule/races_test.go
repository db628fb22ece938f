package schedule_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

func TestPGRacesSelectsActiveRacesInTheWindow(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	cfg := schedule.DefaultConfig() // look back 2 h, ahead 24 h
	now := time.Date(2025, 7, 17, 3, 0, 0, 0, time.UTC)

	races := []struct {
		id     string
		start  time.Duration
		status nztab.Status
	}{
		{"started-long-ago", -2*time.Hour - time.Second, nztab.StatusOpen},
		{"started-within-look-back", -2*time.Hour + time.Second, nztab.StatusOpen},
		{"interim", -30 * time.Minute, nztab.StatusInterim},
		{"closed", -10 * time.Minute, nztab.StatusClosed},
		{"final", 10 * time.Minute, nztab.StatusFinal},
		{"abandoned", 20 * time.Minute, nztab.StatusAbandoned},
		{"soon", 5 * time.Minute, nztab.StatusOpen},
		{"tomorrow", 23 * time.Hour, nztab.StatusOpen},
		{"beyond-horizon", 24*time.Hour + time.Second, nztab.StatusOpen},
	}
	ms := []baseline.MeetingRow{{MeetingID: "m1", MeetingName: "Te Rapa", Country: "NZ", RaceType: baseline.RaceTypeThoroughbred,
		Category: "T", Date: nzday.Of(now)}}
	var rs []baseline.RaceRow
	for i, r := range races {
		rs = append(rs, baseline.RaceRow{RaceID: r.id, MeetingID: "m1", Name: r.id, RaceNumber: i + 1,
			StartTime: now.Add(r.start), Status: r.status})
	}
	_, err := baseline.Upsert(ctx, db.Pool, ms, rs)
	require.NoError(t, err)

	got, err := schedule.NewPGRaces(db.Pool, cfg).Candidates(ctx, now)
	require.NoError(t, err)
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	require.Equal(t, []string{"started-within-look-back", "interim", "closed", "soon", "tomorrow"}, ids, "earliest start first")
	require.Equal(t, schedule.Race{ID: "interim", Start: now.Add(-30 * time.Minute), Status: "interim"},
		schedule.Race{ID: got[1].ID, Start: got[1].Start.UTC(), Status: got[1].Status})
}
