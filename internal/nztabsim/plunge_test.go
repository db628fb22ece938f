package nztabsim

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParsePlungeReadsRaceRunnerAndMinutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Plunge
		err  bool
	}{
		{"r1:5:3", Plunge{RaceID: "r1", Runner: 5, Before: 3 * time.Minute}, false},
		{"r1:12:2.5", Plunge{RaceID: "r1", Runner: 12, Before: 150 * time.Second}, false},
		{"r1:5", Plunge{}, true},
		{":5:3", Plunge{}, true},
		{"r1:five:3", Plunge{}, true},
		{"r1:0:3", Plunge{}, true},
		{"r1:5:0.1", Plunge{}, true}, // under one 15 s step
		{"r1:5:121", Plunge{}, true},
		{"r1:5:soon", Plunge{}, true},
		{"r1:5:3:extra", Plunge{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePlunge(tc.in)
			if tc.err {
				require.ErrorIs(t, err, ErrBadPlunge)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			again, err := ParsePlunge(got.String())
			require.NoError(t, err)
			require.Equal(t, got, again, "String reads back")
		})
	}
}

// plunged builds the test day with one plunge, and the same day without.
func plunged(t *testing.T, p func(RaceInfo) Plunge) (with, without *Sim, race RaceInfo) {
	t.Helper()
	clk := NewManualClock(nzTime(t, testDate, "11:30"))
	without, err := New(Config{Seed: 4, Date: testDate, Clock: clk})
	require.NoError(t, err)
	race = openRace(t, without, "12:30")
	with, err = New(Config{Seed: 4, Date: testDate, Clock: clk, Plunges: []Plunge{p(race)}})
	require.NoError(t, err)
	return with, without, race
}

func TestAPlungeMovesOneRunnersMoneyAndPricesFromItsStepOn(t *testing.T) {
	t.Parallel()
	with, without, race := plunged(t, func(r RaceInfo) Plunge { return Plunge{RaceID: r.ID, Runner: 0, Before: 3 * time.Minute} })
	require.Len(t, with.Plunges(), 1)
	pl := with.Plunges()[0]
	require.Equal(t, race.StartTime.Add(-3*time.Minute), pl.At, "starts lie on step boundaries")
	require.GreaterOrEqual(t, pl.Bet, MinPlungeBet)

	// Before the plunge the day is the same, byte for byte.
	for _, at := range []time.Time{pl.At.Add(-time.Hour), pl.At.Add(-time.Nanosecond)} {
		a, err := with.EventJSON(race.ID, at)
		require.NoError(t, err)
		b, err := without.EventJSON(race.ID, at)
		require.NoError(t, err)
		require.True(t, bytes.Equal(a, b), "unchanged at %s", at)
	}

	// From the plunge on, the win pool holds the bet and the runner's hold
	// and prices follow it; the pick is the runner with the least chance.
	before := eventAt(t, without, race.ID, pl.At.Add(-time.Nanosecond))
	for _, at := range []time.Time{pl.At, pl.At.Add(time.Minute)} {
		plain, moved := eventAt(t, without, race.ID, at), eventAt(t, with, race.ID, at)
		require.InDelta(t, winPool(plain)+pl.Bet, winPool(moved), 0.01, "the bet is in the win pool at %s", at)
		heldPlain, heldMoved := hold(plain, pl.EntrantID), hold(moved, pl.EntrantID)
		require.Greater(t, heldMoved, heldPlain+30, "hold %d%% → %d%% at %s", heldPlain, heldMoved, at)
		require.Less(t, *runnerOf(moved, pl.EntrantID).Odds.PoolWin, *runnerOf(plain, pl.EntrantID).Odds.PoolWin/2)
		require.Less(t, *runnerOf(moved, pl.EntrantID).Odds.FixedWin, *runnerOf(plain, pl.EntrantID).Odds.FixedWin/2)
	}
	for _, rn := range before.Data.Runners {
		if rn.EntrantID != pl.EntrantID && rn.Odds.PoolWin != nil {
			require.LessOrEqual(t, *rn.Odds.PoolWin, *runnerOf(before, pl.EntrantID).Odds.PoolWin,
				"runner %d is not the longest price", pl.Runner)
		}
	}
}

func TestAPlungeTheSimulatorCannotStageIsRefused(t *testing.T) {
	t.Parallel()
	clk := NewManualClock(nzTime(t, testDate, "11:30"))
	s, err := New(Config{Seed: 4, Date: testDate, Clock: clk})
	require.NoError(t, err)
	race := openRace(t, s, "12:30")
	var scratched Plunge
	for _, r := range s.Races() {
		rc := s.byID[r.ID]
		for i, rn := range rc.runners {
			if !rn.scratchAt.IsZero() && r.AbandonedAt.IsZero() {
				scratched = Plunge{RaceID: r.ID, Runner: i + 1, Before: rc.adv.Sub(rn.scratchAt) - Step}
			}
		}
	}
	require.NotEmpty(t, scratched.RaceID, "the test day has a scratching")
	for name, p := range map[string]Plunge{
		"unknown race":      {RaceID: "nope", Runner: 1, Before: time.Minute},
		"no such runner":    {RaceID: race.ID, Runner: race.Runners + 1, Before: time.Minute},
		"within one step":   {RaceID: race.ID, Runner: 1, Before: time.Second},
		"scratched by then": scratched,
		"more than 2 h out": {RaceID: race.ID, Runner: 1, Before: 3 * time.Hour},
	} {
		_, err := New(Config{Seed: 4, Date: testDate, Clock: clk, Plunges: []Plunge{p}})
		require.ErrorIs(t, err, ErrBadPlunge, name)
	}
}

func winPool(ev event) float64 {
	for _, p := range ev.Data.TotePools {
		if p.ProductType == "Win" {
			return p.Total
		}
	}
	return 0
}

func hold(ev event, id string) int {
	n := 0
	for _, e := range ev.Data.MoneyTracker.Entrants {
		if e.EntrantID == id {
			n += e.HoldPercentage
		}
	}
	return n
}

func runnerOf(ev event, id string) eventRunner {
	for _, rn := range ev.Data.Runners {
		if rn.EntrantID == id {
			return rn
		}
	}
	return eventRunner{}
}

func TestAPlungeRightAfterAScratchingIsNotClean(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 4, "11:30")
	var scratched, plain int
	for _, r := range s.Races() {
		if !r.AbandonedAt.IsZero() {
			continue
		}
		if len(r.ScratchedAt) == 0 {
			require.True(t, Clean(r, 3*time.Minute), "no scratching")
			plain++
			continue
		}
		last := r.ScratchedAt[len(r.ScratchedAt)-1]
		lead := r.StartTime.Sub(last) - time.Minute // a minute after the scratching
		require.False(t, Clean(r, lead), "race %s: a scratching a minute before", r.ID)
		require.True(t, Clean(r, lead+16*time.Minute) || len(r.ScratchedAt) > 1, "race %s: a scratching after it", r.ID)
		scratched++
	}
	require.Positive(t, scratched)
	require.Positive(t, plain)
}
