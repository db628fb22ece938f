package alerts_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/alerts"
)

// These tests judge whole simulated race days in memory, as the flow would
// store them (internal/simday: the scheduler's default cadence, prices kept
// as odds_history keeps them). On a fixed date, so that what they judge does
// not change from day to day. The flow's tests (flows) do the same through
// the database.

const simDate = "2025-07-17"

// histories records a simulated day on the flow's cadence.
func histories(t *testing.T, seed int64, meetings int, plunges ...nztabsim.Plunge) map[string]alerts.History {
	t.Helper()
	day, err := simday.Build(context.Background(), simday.Config{Seed: seed, Date: simDate, Meetings: meetings,
		Plan: simday.ScheduledTimes, Plunges: plunges})
	require.NoError(t, err)
	hs, err := day.Histories()
	require.NoError(t, err)
	return hs
}

func describe(as []alerts.Alert) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "\n  %s race %s runner %s at %d min (from %s):", a.Kind, a.RaceID, a.EntrantID, a.MinutesToStart,
			a.ReferenceAt.Format(time.TimeOnly))
		for _, v := range []struct {
			name string
			f    *float64
			c    *int64
		}{{"odds", a.BeforeOdds, nil}, {"→", a.AfterOdds, nil}, {"cents", nil, a.BeforeCents}, {"→", nil, a.AfterCents},
			{"window", nil, a.WindowCents}, {"pct", a.BeforePct, nil}, {"→", a.AfterPct, nil}, {"change", a.ChangePct, nil},
			{"ratio", a.Ratio, nil}} {
			switch {
			case v.f != nil:
				fmt.Fprintf(&b, " %s %.2f", v.name, *v.f)
			case v.c != nil:
				fmt.Fprintf(&b, " %s %d", v.name, *v.c)
			}
		}
	}
	return b.String()
}

func TestTheSimulatorsNormalMarketFiresNoAlert(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("judges two simulated days")
	}
	races, polls := 0, 0
	var fired []alerts.Alert
	for _, seed := range []int64{1, 2} {
		for _, h := range histories(t, seed, 6) {
			races, polls = races+1, polls+len(h.Polls)
			fired = append(fired, alerts.Scan(alerts.DefaultConfig(), h)...)
		}
	}
	t.Logf("%d races, %d polls judged: %d false alerts", races, polls, len(fired))
	require.Empty(t, fired, "alerts on races without a staged move:%s", describe(fired))
}

func TestAStagedPlungeFiresEveryRuleAtTheFirstPollThatSeesIt(t *testing.T) {
	t.Parallel()
	// A plunge on every race of the day, 3 minutes before its start, on the
	// runner with the least chance.
	plain, err := simday.Build(context.Background(), simday.Config{Seed: 3, Date: simDate, Meetings: 2, Plan: func(nztabsim.RaceInfo) []time.Time { return nil }})
	require.NoError(t, err)
	var plunges []nztabsim.Plunge
	for _, r := range plain.Races {
		if r.AbandonedAt.IsZero() {
			plunges = append(plunges, nztabsim.Plunge{RaceID: r.ID, Before: 3 * time.Minute})
		}
	}
	hs := histories(t, 3, 2, plunges...)
	day, err := nztabsim.New(nztabsim.Config{Seed: 3, Date: simDate, Meetings: 2, Plunges: plunges})
	require.NoError(t, err)
	for _, staged := range day.Plunges() {
		t.Run(staged.RaceID, func(t *testing.T) {
			t.Parallel()
			h := hs[staged.RaceID]
			first := slices.IndexFunc(h.Polls, func(p alerts.Poll) bool { return !p.At.Before(staged.At) })
			require.Positive(t, first)
			seen := h.Polls[first]

			got := map[alerts.Kind]alerts.Alert{}
			for _, a := range alerts.Scan(alerts.DefaultConfig(), h) {
				require.False(t, a.FiredAt.Before(seen.At), "an alert before the plunge:%s", describe([]alerts.Alert{a}))
				if a.EntrantID == staged.EntrantID || a.Kind == alerts.KindPoolSurge {
					require.Equal(t, seen.At, a.FiredAt, "fired by the first poll that sees the plunge")
					got[a.Kind] = a
				}
			}
			require.Len(t, got, 3, "steamer, late money and pool surge:%s", describe(slices.Collect(mapsValues(got))))
			late := got[alerts.KindLateMoney]
			ref := slices.IndexFunc(h.Polls, func(p alerts.Poll) bool { return p.At.Equal(late.ReferenceAt) })
			require.NotEqual(t, seen.Bucket, h.Polls[ref].Bucket, "the reference is the poll before the bucket")
			require.Equal(t, seen.Bucket, h.Polls[ref+1].Bucket, "the reference is the poll before the bucket")
			before, after := runnerAt(h.Polls[ref], staged.EntrantID), runnerAt(seen, staged.EntrantID)
			require.Equal(t, before.WinCents, *late.BeforeCents)
			require.Equal(t, after.WinCents, *late.AfterCents)
			surge := got[alerts.KindPoolSurge]
			require.GreaterOrEqual(t, *surge.WindowCents, int64(staged.Bet*100)-int64(len(seen.Runners)), "the bet is in the pool's growth")
			require.Greater(t, *got[alerts.KindSteamer].ChangePct, 30.0)
		})
	}
}

func runnerAt(p alerts.Poll, id string) alerts.Runner {
	for _, r := range p.Runners {
		if r.EntrantID == id {
			return r
		}
	}
	return alerts.Runner{}
}

func mapsValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}
