package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nzday"
)

// raceLine is one race of `raceflow races --json`.
type raceLine struct {
	RaceID      string `json:"race_id"`
	RaceNumber  int    `json:"race_number"`
	Name        string `json:"name"`
	StartTime   string `json:"start_time"`    // RFC 3339, UTC
	StartTimeNZ string `json:"start_time_nz"` // RFC 3339, NZ offset
	Status      string `json:"status"`
	MeetingID   string `json:"meeting_id"`
	Meeting     string `json:"meeting"`
	Country     string `json:"country"`
	RaceType    string `json:"race_type"`

	start time.Time
}

func (a *app) racesCommand() *cobra.Command {
	var (
		date   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "races [--date YYYY-MM-DD] [--json]",
		Short: "list a day's meetings and races from the API, with their ids",
		Long: `Lists the meetings and races of one NZ racing day that raceflow tracks (NZ and
AUS thoroughbred and harness racing) as the API has them: race ids, start times in
NZ time and status. Feed the ids to raceflow process.`,
		Example: `  raceflow races
  raceflow races --date 2025-07-17 --json`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&date, "date", "", "NZ racing day YYYY-MM-DD (default: today in NZ)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per race")
	set := a.bindConfig(cmd, config.FlagAPI)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		day := nzday.Of(time.Now())
		if date != "" {
			if day, err = nzday.Parse(date); err != nil {
				return usagef("--date %q is not an NZ day such as 2025-07-17", date)
			}
		}
		return a.races(cmd.Context(), cfg, day, asJSON)
	}
	return cmd
}

func (a *app) races(ctx context.Context, cfg config.Config, day nzday.Day, asJSON bool) error {
	client, err := newAPIClient(cfg, nil)
	if err != nil {
		return err
	}
	list, err := client.FetchMeetings(ctx, day.String())
	if err != nil {
		return err
	}
	meetings, races, skipped := baseline.Rows(list, baseline.DefaultFilter())
	for _, s := range skipped {
		fmt.Fprintf(a.stderr, "raceflow races: %v\n", s)
	}
	byID := make(map[string]baseline.MeetingRow, len(meetings))
	for _, m := range meetings {
		byID[m.MeetingID] = m
	}
	lines := make([]raceLine, 0, len(races))
	for _, r := range races {
		m := byID[r.MeetingID]
		lines = append(lines, raceLine{
			RaceID: r.RaceID, RaceNumber: r.RaceNumber, Name: r.Name,
			StartTime: r.StartTime.UTC().Format(time.RFC3339), StartTimeNZ: r.StartTime.In(nzday.Location()).Format(time.RFC3339),
			Status: string(r.Status), MeetingID: r.MeetingID, Meeting: m.MeetingName, Country: m.Country, RaceType: m.RaceType,
			start: r.StartTime,
		})
	}
	// A race card reads by time; races of one meeting by number.
	slices.SortFunc(lines, func(x, y raceLine) int {
		return cmp.Or(x.start.Compare(y.start), cmp.Compare(x.Meeting, y.Meeting), cmp.Compare(x.RaceNumber, y.RaceNumber))
	})
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		return nil
	}
	if len(lines) == 0 {
		_, err := fmt.Fprintf(a.stdout, "no NZ or AUS thoroughbred or harness races on %s\n", day)
		return err
	}
	fmt.Fprintf(a.stdout, "%d races of %d meetings on %s (NZ time)\n\n", len(lines), len(meetings), day)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tMEETING\tRACE\tSTATUS\tCOUNTRY\tTYPE\tRACE ID\tNAME")
	for _, l := range lines {
		fmt.Fprintf(tw, "%s\t%s\tR%d\t%s\t%s\t%s\t%s\t%s\n", l.start.In(nzday.Location()).Format("15:04 MST"), l.Meeting, l.RaceNumber,
			l.Status, l.Country, l.RaceType, l.RaceID, l.Name)
	}
	return tw.Flush()
}
