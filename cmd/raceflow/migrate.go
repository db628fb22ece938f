package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/migrations"
	"github.com/raceflow/raceflow/stages/partitions"
)

func (a *app) migrateCommand() *cobra.Command {
	args, run := subcommands("migrate action")
	cmd := &cobra.Command{
		Use:   "migrate up|down|status|version",
		Short: "apply or inspect schema migrations: up | down | status | version",
		Long: `Applies or inspects the embedded, versioned schema migrations (ledger table
raceflow_schema_migrations) in the database DATABASE_URL names.`,
		Args: args,
		RunE: run,
	}
	for _, action := range []struct {
		name, short string
		run         func(context.Context, io.Writer, migrateDeps) error
	}{
		{"up", "apply every pending migration and create history partitions around today", migrateUp},
		{"down", "roll back the latest migration", migrateDown},
		{"status", "list every migration and when it was applied", migrateStatus},
		{"version", "print the schema version", migrateVersion},
	} {
		sub := &cobra.Command{Use: action.name, Short: action.short, Args: noArgs}
		set := a.bindConfig(sub, config.FlagDatabase)
		sub.RunE = func(cmd *cobra.Command, _ []string) error {
			cfg, err := set.resolve(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
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
			return action.run(ctx, cmd.OutOrStdout(), migrateDeps{pool: pool, m: m, cfg: cfg})
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

// migrateDeps are what a migrate action works on.
type migrateDeps struct {
	pool *pgxpool.Pool
	m    *migrations.Migrator
	cfg  config.Config
}

func migrateUp(ctx context.Context, w io.Writer, d migrateDeps) error {
	applied, err := d.m.Up(ctx)
	for _, r := range applied {
		fmt.Fprintf(w, "applied %05d %s (%s)\n", r.Version, r.Name, r.Duration.Round(time.Millisecond))
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(w, "schema is up to date")
	}
	pm, err := partitions.New(d.pool, partitions.Config{DaysBack: 1, DaysAhead: 2, Retention: d.cfg.HistoryRetention})
	if err != nil {
		return err
	}
	return pm.Ensure(ctx, time.Now())
}

func migrateDown(ctx context.Context, w io.Writer, d migrateDeps) error {
	rolled, err := d.m.Down(ctx)
	for _, r := range rolled {
		fmt.Fprintf(w, "rolled back %05d %s\n", r.Version, r.Name)
	}
	return err
}

func migrateStatus(ctx context.Context, w io.Writer, d migrateDeps) error {
	st, err := d.m.Status(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED AT")
	for _, s := range st {
		at := "pending"
		if s.Applied {
			at = s.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%05d\t%s\t%s\n", s.Version, s.Name, at)
	}
	return tw.Flush()
}

func migrateVersion(ctx context.Context, w io.Writer, d migrateDeps) error {
	v, err := d.m.Version(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, v)
	return err
}
