package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/internal/demo"
	"github.com/raceflow/raceflow/internal/devdb"
	"github.com/raceflow/raceflow/stages/nztab"
)

func (a *app) demoCommand() *cobra.Command {
	def := demo.DefaultConfig()
	var (
		minutes, speed float64
		seed           int64
		meetings       int
		plunge         bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "run the whole pipeline on a simulated race day (no configuration needed)",
		Long: `Runs the whole continuous pipeline on a simulated race day at accelerated time,
with live progress, then prints a summary: polls, latencies against the target,
rows written, per finished race the runners with most of the money and the
biggest late money move, and the day's alerts (a plunge is staged on one race).
With DATABASE_URL unset it starts a private PostgreSQL and removes it afterwards.
Ctrl-C ends it early with the summary of what was done.

Exit code 0 when polls succeeded and none failed (also after Ctrl-C), 1 otherwise.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.Float64Var(&minutes, "minutes", def.Duration.Minutes(), "how long to run, in real minutes")
	fs.Float64Var(&speed, "speed", def.Speed, "simulated seconds per real second")
	fs.Int64Var(&seed, "seed", def.Seed, "simulator seed")
	fs.IntVar(&meetings, "meetings", def.Meetings, "simulated NZ/AUS horse meetings")
	fs.BoolVar(&plunge, "plunge", def.Plunge, "stage a late plunge on one race, so the day has alerts (--plunge=false: none)")
	set := a.bindConfig(cmd, config.FlagDatabase|config.FlagBackend|config.FlagShards|config.FlagHTTP|config.FlagLog|config.FlagAlerts)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		dcfg := def
		dcfg.Duration = time.Duration(minutes * float64(time.Minute))
		dcfg.Speed, dcfg.Seed, dcfg.Meetings, dcfg.Plunge = speed, seed, meetings, plunge
		switch {
		case minutes <= 0:
			return usagef("--minutes must be positive, got %g", minutes)
		case speed <= 0:
			return usagef("--speed must be positive, got %g", speed)
		}
		if err := dcfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		return a.demo(cmd.Context(), cfg, dcfg)
	}
	return cmd
}

func (a *app) demo(ctx context.Context, cfg config.Config, dcfg demo.Config) error {
	log := newLogger(cfg, a.stderr)
	if a.getenv("LOG_LEVEL") == "" {
		// The progress display and summary say what the logs would; slow-poll
		// warnings at accelerated time would drown them.
		log.SetLevel(logrus.ErrorLevel)
	}
	say := func(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }

	db, err := devdb.Open(ctx, cfg.DatabaseURL, false, "raceflow", say)
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			fmt.Fprintf(a.stderr, "raceflow demo: clean up the database: %v\n", err)
		}
	}()
	say("database: %s", db.Desc)
	cfg.DatabaseURL = db.URL
	pool, err := openSchema(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	flow := flowConfig(cfg)
	flow.Namespace = dcfg.Service.Flow.Namespace // the demo's own flow
	dcfg.Service.Flow = flow
	dcfg.Service.Partitions.Retention = cfg.HistoryRetention
	dcfg.Client = nztab.ClientConfig{FromEmail: cfg.FromEmail, PartnerName: cfg.PartnerName, PartnerID: cfg.PartnerID, Timeout: cfg.FetchTimeout}
	dcfg.HTTPAddr = cfg.HTTPAddr
	dcfg.DropTopics = db.Private
	sum, err := demo.Run(ctx, dcfg, demo.Deps{Pool: pool, Logger: log, Out: a.stdout, TTY: isTerminal(a.stdout)})
	if err != nil {
		return err
	}
	if err := sum.Write(a.stdout); err != nil {
		return err
	}
	return sum.Err()
}
