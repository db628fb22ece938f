package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/raceflow/raceflow/migrations"
	"github.com/raceflow/raceflow/stages/partitions"
)

func runMigrate(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow migrate [flags] up | down | status | version")
		fs.PrintDefaults()
	}
	cfg, err := parseConfig(a, fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	action := fs.Arg(0)
	switch action {
	case "up", "down", "status", "version":
	default:
		fs.Usage()
		return fmt.Errorf("%w: unknown action %q", errUsage, action)
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	m, err := migrations.New(pool)
	if err != nil {
		return err
	}
	defer m.Close()

	switch action {
	case "up":
		applied, err := m.Up(ctx)
		for _, r := range applied {
			fmt.Fprintf(a.stdout, "applied %05d %s (%s)\n", r.Version, r.Name, r.Duration.Round(time.Millisecond))
		}
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Fprintln(a.stdout, "schema is up to date")
		}
		pm, err := partitions.New(pool, partitions.Config{DaysBack: 1, DaysAhead: 2, Retention: cfg.HistoryRetention})
		if err != nil {
			return err
		}
		return pm.Ensure(ctx, time.Now())
	case "down":
		rolled, err := m.Down(ctx)
		for _, r := range rolled {
			fmt.Fprintf(a.stdout, "rolled back %05d %s\n", r.Version, r.Name)
		}
		return err
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED AT")
		for _, s := range st {
			at := "pending"
			if s.Applied {
				at = s.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%05d\t%s\t%s\n", s.Version, s.Name, at)
		}
		return tw.Flush()
	default: // version
		v, err := m.Version(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, v)
		return nil
	}
}
