package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/replay"
	"github.com/raceflow/raceflow/internal/progress"
	"github.com/raceflow/raceflow/migrations"
	"github.com/raceflow/raceflow/stages/nzday"
)

// replayTimeFormats are the local (NZ) forms --from and --to accept besides
// RFC 3339.
var replayTimeFormats = []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04"}

// parseReplayTime reads an RFC 3339 instant, an NZ local time, or an NZ
// racing day; a day given as --to means its end, so --from D --to D is the
// whole day.
func parseReplayTime(s string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, f := range replayTimeFormats {
		if t, err := time.ParseInLocation(f, s, nzday.Location()); err == nil {
			return t, nil
		}
	}
	d, err := nzday.Parse(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not RFC 3339, an NZ local time (2006-01-02 15:04) or an NZ day (2006-01-02)", s)
	}
	if end {
		return d.End().Add(-time.Nanosecond), nil
	}
	return d.Start(), nil
}

// replayFlags are the settings of `raceflow replay`.
type replayFlags struct {
	from, to, meeting, runID, resume string
	races                            []string
	dryRun, rebuild, notify          bool
	concurrency                      int
}

func (a *app) replayCommand() *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay [--rebuild] [--notify] [--from T] [--to T] [--race ID ...] [--meeting ID] [--dry-run] [--run-id ID | --resume ID]",
		Short: "re-derive the tables from stored raw fetches, without calling the API",
		Long: `Re-derives the tables from the stored raw API responses (kept for
RACEFLOW_RETENTION): the event fetches of the flow's stored topic and the daily
meetings lists, in their observation order, without calling the API. With no
filter, everything retained is replayed. Interrupt it any time; run it again
with --resume RUN_ID to continue without double work.

--rebuild empties the derived rows of every race the filter selects (its races,
entrants, pools, results, history, race_polls and alerts rows; meetings rows are shared
and written again instead) and re-derives them from all of the race's stored
fetches and the stored meetings lists, one transaction per race. A race whose
race_polls holds a poll that is no longer stored is left as it is.

Every replayed poll is judged by the alert rules (RACEFLOW_ALERT_*) as the live
flow judged it, so the alerts table is rebuilt too. No webhook is called unless
--notify is given: then the alerts stored are published to the flow's alerts
topic, which a running raceflow run delivers.

Times (--from, --to) are RFC 3339 instants, NZ local times (2025-07-17 12:30) or NZ
racing days (2025-07-17; as --to, the end of that day).

Exit code 0 when polls were replayed, 3 when no stored poll matches (or --resume
names no run), 1 when a poll could not be replayed or the run was interrupted.`,
		Args: noArgs,
	}
	def := replay.DefaultConfig()
	fs := cmd.Flags()
	fs.StringVar(&f.from, "from", "", "replay polls observed at or after this time")
	fs.StringVar(&f.to, "to", "", "replay polls observed at or before this time (an NZ day means its end)")
	fs.StringSliceVar(&f.races, "race", nil, "replay only this race (repeatable, or comma-separated)")
	fs.StringVar(&f.meeting, "meeting", "", "replay only the races of this meeting")
	fs.BoolVar(&f.dryRun, "dry-run", false, "transform everything and report what the snapshots carry; write nothing")
	fs.BoolVar(&f.rebuild, "rebuild", false, "empty the selected races' derived rows and re-derive them, one transaction per race")
	fs.BoolVar(&f.notify, "notify", false, "publish the alerts the replay stores to the flow's alerts topic, for a running raceflow run to deliver")
	fs.StringVar(&f.runID, "run-id", "", "name of the run (default: generated); an existing run continues where it stopped")
	fs.StringVar(&f.resume, "resume", "", "continue the run with this id, with the filter it was started with")
	fs.IntVar(&f.concurrency, "concurrency", def.Concurrency, "stored fetches transformed at once (--rebuild: races rebuilt at once); writes stay in observation order")
	set := a.bindConfig(cmd, config.FlagDatabase|config.FlagBackend|config.FlagNamespace|config.FlagShards|config.FlagLog|config.FlagAlertRules)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		def.Alerts = cfg.Alerts
		rc, err := f.config(def)
		if err != nil {
			return err
		}
		return a.replay(cmd.Context(), cfg, rc)
	}
	return cmd
}

// config is the replay configuration the flags ask for.
func (f replayFlags) config(def replay.Config) (replay.Config, error) {
	rc := def
	rc.Concurrency, rc.DryRun, rc.RunID, rc.Rebuild, rc.Notify = f.concurrency, f.dryRun, f.runID, f.rebuild, f.notify
	rc.Filter.MeetingID = f.meeting
	for _, id := range f.races {
		if id = strings.TrimSpace(id); id != "" {
			rc.Filter.RaceIDs = append(rc.Filter.RaceIDs, id)
		}
	}
	if f.resume != "" {
		if f.runID != "" && f.runID != f.resume {
			return rc, usagef("--run-id %q and --resume %q name different runs", f.runID, f.resume)
		}
		rc.RunID, rc.Resume = f.resume, true
	}
	for _, tf := range []struct {
		flag string
		val  string
		dst  *time.Time
		end  bool
	}{{"from", f.from, &rc.Filter.From, false}, {"to", f.to, &rc.Filter.To, true}} {
		if tf.val == "" {
			continue
		}
		t, err := parseReplayTime(tf.val, tf.end)
		if err != nil {
			return rc, usagef("--%s: %v", tf.flag, err)
		}
		*tf.dst = t
	}
	if err := rc.Validate(); err != nil {
		return rc, usagef("%v", err)
	}
	return rc, nil
}

func (a *app) replay(ctx context.Context, cfg config.Config, rc replay.Config) error {
	fcfg := flowConfig(cfg)
	log := newLogger(cfg, a.stderr)
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool); err != nil {
		return err
	}
	// The stored topic is where RACEFLOW_PUBSUB keeps it.
	drv, err := flows.OpenDriver(fcfg, pool, log)
	if err != nil {
		return err
	}
	defer drv.Close()
	disp := progress.New(a.stderr, isTerminal(a.stderr), nil)
	show := func(st replay.Progress) { disp.Show(replayLine(st), st.Done == st.Total) }
	r, err := replay.New(rc, replay.Deps{Pool: pool, Driver: drv, Logger: log, Progress: show})
	if errors.Is(err, replay.ErrNoStoredTopic) {
		return fmt.Errorf("%w: the %s backend keeps no raw fetches", err, fcfg.Backend)
	}
	if err != nil {
		return err
	}
	sum, err := r.Run(ctx)
	disp.Finish()
	if sum.Stored > 0 || sum.Polls > 0 || sum.Lists.Stored > 0 || len(sum.Failures) > 0 {
		printReplaySummary(a.stdout, sum)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted; continue with: raceflow replay --resume %s", r.RunID())
	case errors.Is(err, replay.ErrIncomplete):
		return err
	case err != nil:
		return err
	}
	if sum.Stored == 0 && sum.Lists.Stored == 0 {
		return skippedf("no stored poll of namespace %s matches; nothing to replay", fcfg.Namespace)
	}
	return nil
}

// replayLine renders where a replay run stands, e.g.
// "replay r1 [#####.....]  50% 120/240 polls, 3.1 polls/s, 0 failed, ETA 39s".
func replayLine(st replay.Progress) string {
	rate, frac := 0.0, 1.0
	if st.Elapsed > 0 {
		rate = float64(st.Done) / st.Elapsed.Seconds()
	}
	if st.Total > 0 {
		frac = float64(st.Done) / float64(st.Total)
	}
	eta := ""
	if rate > 0 && st.Done < st.Total {
		eta = ", ETA " + time.Duration(float64(st.Total-st.Done)/rate*float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("replay %s %s %d/%d polls, %.1f polls/s, %d failed%s", st.RunID, progress.Bar(frac, 30),
		st.Done, st.Total, rate, st.Failed, eta)
}

func printReplaySummary(w io.Writer, s replay.Summary) {
	state := "complete"
	switch {
	case s.DryRun && s.Complete:
		state = "dry run, nothing written"
	case !s.Complete:
		state = "incomplete"
	}
	if s.Rebuild {
		state += ", rebuild"
	}
	if s.Resumed {
		state += ", resumed"
	}
	fmt.Fprintf(w, "Replay %s (%s)\n", s.RunID, state)
	fmt.Fprintf(w, "  stored polls selected  %d in %d topics (%d done by earlier runs)\n", s.Stored, len(s.Topics), s.AlreadyDone)
	fmt.Fprintf(w, "  polls replayed         %d of %d races in %s (%.1f polls/s)\n", s.Polls, s.Races,
		s.Duration.Round(time.Millisecond), s.PollsPerSecond())
	fmt.Fprintf(w, "  meetings lists         %d applied of %d stored (%d meetings, %d races changed)\n", s.Lists.Applied,
		s.Lists.Stored, s.Lists.Meetings, s.Lists.Races)
	title := "rows changed"
	if s.DryRun {
		title = "rows the snapshots carry (upper bound of a write)"
	}
	fmt.Fprintf(w, "  %s:\n", title)
	rows := s.Rows
	for _, r := range []struct {
		table string
		n     int
		extra string
	}{
		{"meetings", rows.Meetings, ""},
		{"races", rows.Races, ""},
		{"entrants", rows.Entrants, ""},
		{"race_pools", rows.RacePools, ""},
		{"race_results", rows.Results, ""},
		{"race_polls", rows.Polls, ""},
		{"money_flow_history", rows.MoneyFlow, fmt.Sprintf("%d later rows corrected", rows.MoneyFlowCorrected)},
		{"odds_history", rows.Odds, fmt.Sprintf("%d later rows deleted", rows.OddsDeleted)},
		{"alerts", s.Alerts, fmt.Sprintf("%d sent for delivery", s.Notified)},
	} {
		extra := ""
		if r.extra != "" && !s.DryRun {
			extra = "  (" + r.extra + ")"
		}
		fmt.Fprintf(w, "    %-20s %8d%s\n", r.table, r.n, extra)
	}
	fmt.Fprintf(w, "  failures               %d\n", len(s.Failures))
	for _, f := range s.Failures {
		action := "skipped"
		if f.Stopped {
			action = "race stopped; resume retries it"
		}
		fmt.Fprintf(w, "    race %s poll %s (%s offset %d): %s/%s, %s: %s\n",
			orDash(f.RaceID), orDash(f.PollID), f.Topic, f.Offset, f.Stage, f.Kind, action, f.Reason)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
