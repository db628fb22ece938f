// Package demo runs the whole continuous pipeline on a simulated race day
// at accelerated time: the NZ TAB simulator on loopback, the service that
// `raceflow run` runs (baseline, scheduler, flow, metrics and health), live
// progress, and a summary of what was done. The command only finds a
// database, parses flags and prints.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/progress"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

// Config shapes a demo. Start from DefaultConfig.
type Config struct {
	// Duration is how long the demo runs, in real time.
	Duration time.Duration
	// Speed is how many simulated seconds pass per real second.
	Speed float64
	// Seed and Meetings shape the simulated day.
	Seed     int64
	Meetings int
	// Service is the service to run; its flow's namespace is the demo's own.
	Service flows.ServiceConfig
	// Client is the API client's identification and timeout; its base URL
	// and clock are the simulator's.
	Client nztab.ClientConfig
	// HTTPAddr serves metrics and health, as `raceflow run` does; a busy
	// address only loses those.
	HTTPAddr string
	// DropTopics removes the flow's topics when the demo ends (a private
	// database goes with the demo, and a broker's topics must go too, or
	// the next demo would start on this one's leftovers).
	DropTopics bool
	// LatencyTarget is what a poll's total may take at p95; the summary
	// says whether the demo met it.
	LatencyTarget time.Duration
	// Plunge stages a late plunge on one race (PlungeLead before the start
	// of the first that starts at least 10 simulated minutes into the
	// demo), so the demo shows alerts.
	Plunge bool
}

// PlungeLead is how long before its race's start the demo's plunge lands.
const PlungeLead = 3 * time.Minute

// DefaultConfig is a two-minute demo of four meetings at 30x, with a
// plunge.
func DefaultConfig() Config {
	scfg := flows.DefaultServiceConfig()
	scfg.Flow.Namespace = "demo" // never competes with a `raceflow run` on a shared database
	scfg.LeaderKey++
	scfg.Schedule.MaxInFlight = 12
	scfg.DrainTimeout = 10 * time.Second
	return Config{Duration: 2 * time.Minute, Speed: 30, Seed: 1, Meetings: 4, Service: scfg, HTTPAddr: ":9090",
		LatencyTarget: 500 * time.Millisecond, Plunge: true}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Duration <= 0 {
		errs = append(errs, errors.New("demo: the duration must be positive"))
	}
	if c.Speed <= 0 {
		errs = append(errs, errors.New("demo: the speed must be positive"))
	}
	if c.Meetings < 1 {
		errs = append(errs, errors.New("demo: at least one meeting"))
	}
	if c.LatencyTarget <= 0 {
		errs = append(errs, errors.New("demo: the latency target must be positive"))
	}
	return errors.Join(errs...)
}

// Deps are what a demo runs on.
type Deps struct {
	Pool   *pgxpool.Pool
	Logger logrus.FieldLogger
	// Out receives what the demo says and its progress; TTY redraws the
	// progress line in place.
	Out io.Writer
	TTY bool
}

// Run runs the demo until its duration has passed or ctx ends (an
// interrupt), and returns what it did either way.
func Run(ctx context.Context, cfg Config, deps Deps) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	say := func(format string, args ...any) { fmt.Fprintf(deps.Out, format+"\n", args...) }

	// The simulator, on simulated time from 15 minutes before the first race.
	today := nzday.Of(time.Now())
	begin := today.Start().Add(12*time.Hour - 15*time.Minute)
	clock := nztabsim.NewSpeedClock(begin, cfg.Speed, time.Now)
	simCfg := nztabsim.Config{Seed: cfg.Seed, Date: today.String(), Meetings: cfg.Meetings, Clock: clock}
	sim, err := nztabsim.New(simCfg)
	if err != nil {
		return nil, err
	}
	if cfg.Plunge {
		if sim, err = withPlunge(sim, simCfg, begin.Add(10*time.Minute)); err != nil {
			return nil, err
		}
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var servers errgroup.Group
	simSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	servers.Go(func() error { return serve(simSrv, simLn) })
	defer func() {
		_ = simSrv.Close()
		if err := servers.Wait(); err != nil {
			deps.Logger.WithError(err).Error("demo: http server")
		}
	}()
	apiURL := "http://" + simLn.Addr().String() + "/affiliates/v1"
	say("NZ TAB simulator: %s (seed %d, %gx time, %s)", apiURL, cfg.Seed, cfg.Speed, today)
	for _, p := range sim.Plunges() {
		r, _ := sim.Race(p.RaceID)
		say("plunge staged: %s R%d, $%.0f on runner %d at %s NZ, %s before the start", r.MeetingName, r.RaceNumber, p.Bet,
			p.Runner, p.At.In(nzday.Location()).Format("15:04:05"), PlungeLead)
	}

	reg := prometheus.NewRegistry()
	metrics, err := flows.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	ccfg := cfg.Client
	ccfg.BaseURL, ccfg.Now = apiURL, clock.Now
	ccfg.HTTPClient = &http.Client{Transport: flows.InstrumentTransport(nil, metrics)}
	client, err := nztab.NewClient(ccfg)
	if err != nil {
		return nil, err
	}
	svc, err := flows.NewService(cfg.Service, flows.ServiceDeps{Pool: deps.Pool, API: client, Logger: deps.Logger,
		Clock: clock, Registry: reg, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	if cfg.DropTopics {
		defer func() {
			if err := flows.DropNamespace(context.WithoutCancel(ctx), cfg.Service.Flow, deps.Pool, deps.Logger); err != nil {
				deps.Logger.WithError(err).Error("demo: clean up the flow's topics")
			}
		}()
	}
	if ln, err := net.Listen("tcp", cfg.HTTPAddr); err != nil {
		say("metrics: not served (%v)", err)
	} else {
		metricsSrv := flows.NewHTTPServer(svc.Handler())
		servers.Go(func() error { return serve(metricsSrv, ln) })
		defer metricsSrv.Close()
		say("metrics: http://%s/metrics", ln.Addr())
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	started := time.Now()
	disp := progress.New(deps.Out, deps.TTY, nil)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var runErr error
loop:
	for {
		select {
		case runErr = <-done:
			break loop
		case <-tick.C:
			disp.Show(progressLine(svc, clock.Now(), time.Since(started)), false)
		}
	}
	disp.Finish()
	interrupted := ctx.Err() != nil
	if runErr != nil && !interrupted {
		return nil, runErr
	}
	sum, err := summarize(ctx, svc, deps.Pool, time.Since(started), cfg)
	if err != nil {
		return nil, err
	}
	sum.Interrupted = interrupted
	return sum, nil
}

// withPlunge is the simulated day of sim with a plunge on the first horse
// race the flow keeps that starts after from and shows one cleanly
// (nztabsim.Clean); sim itself when there is none.
func withPlunge(sim *nztabsim.Sim, cfg nztabsim.Config, from time.Time) (*nztabsim.Sim, error) {
	for _, r := range sim.Races() {
		if r.StartTime.Before(from) || r.Country != "NZ" && r.Country != "AUS" || r.Category != "T" && r.Category != "H" ||
			!nztabsim.Clean(r, PlungeLead) {
			continue
		}
		cfg.Plunges = []nztabsim.Plunge{{RaceID: r.ID, Before: PlungeLead}}
		plunged, err := nztabsim.New(cfg)
		switch {
		case err == nil:
			return plunged, nil
		case !errors.Is(err, nztabsim.ErrBadPlunge):
			return nil, err
		}
	}
	return sim, nil
}

// serve serves until the server is closed.
func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func progressLine(svc *flows.Service, simNow time.Time, elapsed time.Duration) string {
	st := svc.Scheduler().Stats()
	counts := svc.Metrics().Counts()
	sum := svc.Metrics().Summaries()
	return fmt.Sprintf("[%s real, sim %s NZ] races tracked %d finished %d | polls %d ok %d skipped %d failed %d | total p50 %.1f ms p95 %.1f ms",
		elapsed.Round(time.Second), simNow.In(nzday.Location()).Format("15:04:05"), st.Tracked, st.Finished,
		counts[handlers.StatusSuccess]+counts[handlers.StatusSkipped]+counts[handlers.StatusFailed],
		counts[handlers.StatusSuccess], counts[handlers.StatusSkipped], counts[handlers.StatusFailed],
		sum["total"].P50, sum["total"].P95)
}
