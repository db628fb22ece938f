package alerts_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
)

// These tests judge whole simulated race days in memory, as the flow would
// store them: the scheduler's default cadence (every minute, every 30 s
// within 15 minutes, every 15 s within 5), each poll transformed, prices
// kept only when they move by more than 0.01 (odds_history). The flow
// test (flows) does the same through the database on one day.

const simDate = "2025-07-17"

// cadence is when the scheduler polls a race, by default.
func cadence(r nztabsim.RaceInfo) []time.Time {
	end := r.FinalAt
	if !r.AbandonedAt.IsZero() && r.AbandonedAt.Before(end) {
		end = r.AbandonedAt
	}
	var out []time.Time
	t := r.StartTime.Add(-time.Hour)
	for ; t.Before(r.StartTime.Add(-15 * time.Minute)); t = t.Add(time.Minute) {
		out = append(out, t)
	}
	for ; t.Before(r.StartTime.Add(-5 * time.Minute)); t = t.Add(30 * time.Second) {
		out = append(out, t)
	}
	for ; !t.After(end); t = t.Add(15 * time.Second) {
		out = append(out, t)
	}
	return out
}

// simHistory polls race r of sim on the default cadence.
func simHistory(t *testing.T, sim *nztabsim.Sim, r nztabsim.RaceInfo) alerts.History {
	t.Helper()
	h := alerts.History{RaceID: r.ID}
	stored := map[string]float64{}
	for _, at := range cadence(r) {
		body, err := sim.EventJSON(r.ID, at)
		require.NoError(t, err)
		ev, err := nztab.DecodeEvent(body)
		require.NoError(t, err)
		snap, err := transform.Transform(ev, at)
		require.NoError(t, err)
		for _, o := range snap.Odds {
			k, v := o.EntrantID+"/"+o.Type, math.Round(o.Odds*100)/100
			if prev, ok := stored[k]; !ok || math.Abs(prev-v) > 0.01+1e-9 {
				stored[k] = v
			}
		}
		if len(snap.MoneyFlow) == 0 {
			continue
		}
		// Every runner, with its money where it has a row and its prices.
		money := map[string]transform.MoneyFlow{}
		for _, m := range snap.MoneyFlow {
			money[m.EntrantID] = m
		}
		p := alerts.Poll{At: at, MinutesToStart: snap.MoneyFlow[0].TimeToStart, Bucket: snap.MoneyFlow[0].TimeInterval}
		for _, e := range snap.Entrants {
			m := money[e.EntrantID]
			p.Runners = append(p.Runners, alerts.Runner{EntrantID: e.EntrantID, HoldPct: m.HoldPercentage,
				WinCents: m.WinPoolAmount, FixedWin: stored[e.EntrantID+"/fixed_win"], PoolWin: stored[e.EntrantID+"/pool_win"],
				Scratched: e.ScratchTime != nil && !e.ScratchTime.After(at)})
		}
		h.Polls = append(h.Polls, p)
	}
	return h
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
		sim, err := nztabsim.New(nztabsim.Config{Seed: seed, Date: simDate, Meetings: 6, ExtraMeetings: -1})
		require.NoError(t, err)
		for _, r := range sim.Races() {
			h := simHistory(t, sim, r)
			races, polls = races+1, polls+len(h.Polls)
			fired = append(fired, alerts.Scan(alerts.DefaultConfig(), h)...)
		}
	}
	t.Logf("%d races, %d polls judged: %d false alerts", races, polls, len(fired))
	require.Empty(t, fired, "alerts on races without a staged move:%s", describe(fired))
}

func TestAStagedPlungeFiresEveryRuleAtTheFirstPollThatSeesIt(t *testing.T) {
	t.Parallel()
	plain, err := nztabsim.New(nztabsim.Config{Seed: 3, Date: simDate, Meetings: 2, ExtraMeetings: -1})
	require.NoError(t, err)
	for _, r := range plain.Races() {
		if !r.AbandonedAt.IsZero() {
			continue
		}
		t.Run(r.ID, func(t *testing.T) {
			t.Parallel()
			sim, err := nztabsim.New(nztabsim.Config{Seed: 3, Date: simDate, Meetings: 2, ExtraMeetings: -1,
				Plunges: []nztabsim.Plunge{{RaceID: r.ID, Before: 3 * time.Minute}}})
			require.NoError(t, err)
			pl := sim.Plunges()[0]
			h := simHistory(t, sim, r)
			first := slices.IndexFunc(h.Polls, func(p alerts.Poll) bool { return !p.At.Before(pl.At) })
			require.Positive(t, first)
			seen := h.Polls[first]

			got := map[alerts.Kind]alerts.Alert{}
			for _, a := range alerts.Scan(alerts.DefaultConfig(), h) {
				require.False(t, a.FiredAt.Before(seen.At), "an alert before the plunge:%s", describe([]alerts.Alert{a}))
				if a.EntrantID == pl.EntrantID || a.Kind == alerts.KindPoolSurge {
					require.Equal(t, seen.At, a.FiredAt, "fired by the first poll that sees the plunge")
					got[a.Kind] = a
				}
			}
			require.Len(t, got, 3, "steamer, late money and pool surge:%s", describe(slices.Collect(mapsValues(got))))
			late := got[alerts.KindLateMoney]
			ref := slices.IndexFunc(h.Polls, func(p alerts.Poll) bool { return p.At.Equal(late.ReferenceAt) })
			require.NotEqual(t, seen.Bucket, h.Polls[ref].Bucket, "the reference is the poll before the bucket")
			require.Equal(t, seen.Bucket, h.Polls[ref+1].Bucket, "the reference is the poll before the bucket")
			before, after := runnerAt(h.Polls[ref], pl.EntrantID), runnerAt(seen, pl.EntrantID)
			require.Equal(t, before.WinCents, *late.BeforeCents)
			require.Equal(t, after.WinCents, *late.AfterCents)
			surge := got[alerts.KindPoolSurge]
			require.GreaterOrEqual(t, *surge.WindowCents, int64(pl.Bet*100)-int64(len(seen.Runners)), "the bet is in the pool's growth")
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
