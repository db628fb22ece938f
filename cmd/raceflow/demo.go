package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/internal/demo"
	"github.com/raceflow/raceflow/internal/devdb"
	"github.com/raceflow/raceflow/stages/nztab"
)

func runDemo(ctx context.Context, a *app, args []string) error {
	def := demo.DefaultConfig()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	minutes := fs.Float64("minutes", def.Duration.Minutes(), "how long to run, in real minutes")
	speed := fs.Float64("speed", def.Speed, "simulated seconds per real second")
	seed := fs.Int64("seed", def.Seed, "simulator seed")
	meetings := fs.Int("meetings", def.Meetings, "simulated NZ/AUS horse meetings")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow demo [flags]\n\nRuns the whole continuous pipeline on a simulated race day at accelerated time.\nWith DATABASE_URL unset it starts a private PostgreSQL and removes it afterwards.")
		fs.PrintDefaults()
	}
	cfg, err := parseConfig(a, fs, args)
	if err != nil {
		return err
	}
	dcfg := def
	dcfg.Duration = time.Duration(*minutes * float64(time.Minute))
	dcfg.Speed, dcfg.Seed, dcfg.Meetings = *speed, *seed, *meetings
	if err := dcfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
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
	flow.Namespace = def.Service.Flow.Namespace
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
