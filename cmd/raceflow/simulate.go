package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/nzday"
)

// simulateShutdownTimeout bounds how long in-flight requests may finish
// after the command is told to stop.
const simulateShutdownTimeout = 5 * time.Second

// simulateFlags are the settings of `raceflow simulate`.
type simulateFlags struct {
	addr, date, start      string
	seed                   int64
	speed                  float64
	meetings, extra, races int
	faults                 nztabsim.Faults
	plunges                []string
}

func (a *app) simulateCommand() *cobra.Command {
	var f simulateFlags
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "serve a simulated NZ TAB race day with fault injection",
		Long: `Serves a simulated NZ TAB race day on the Affiliates API paths, evolving with
simulated time; point NZTAB_API_URL at the printed base URL. A request can force a
fault with the header X-Sim-Fault: 500|timeout|malformed|truncate|429|404.

--plunge RACE:RUNNER:MINUTES_BEFORE stages a late plunge: that many minutes before
the race's start (2.5 is 2m30s), a bet as large as its win pool so far (at least
$15,000) lands on the runner, and its money and prices move with it (raceflow races
lists the day's race ids). Repeat it for several.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8090", "listen address (port 0 picks a free port)")
	fs.Int64Var(&f.seed, "seed", 1, "seed of the simulated day: the same seed and date give the same day")
	fs.Float64Var(&f.speed, "speed", 1, "simulated seconds per real second")
	fs.StringVar(&f.date, "date", "", "NZ racing day YYYY-MM-DD (default: today in NZ, or the day of --start)")
	fs.StringVar(&f.start, "start", "", "simulated instant to start at, RFC3339 (default: 11:30 NZ time on --date)")
	fs.IntVar(&f.meetings, "meetings", nztabsim.DefaultMeetings, "NZ/AUS thoroughbred and harness meetings")
	fs.IntVar(&f.extra, "extra-meetings", nztabsim.DefaultExtraMeetings, "greyhound and overseas meetings a baseline must filter out (negative: none)")
	fs.IntVar(&f.races, "races", nztabsim.DefaultRacesPerMeeting, "races per meeting")
	fs.DurationVar(&f.faults.Latency, "latency", 0, "delay added to every response (real time)")
	fs.Float64Var(&f.faults.ErrorRate, "error-rate", 0, "share of requests answered 500")
	fs.Float64Var(&f.faults.TimeoutRate, "timeout-rate", 0, "share of requests never answered")
	fs.Float64Var(&f.faults.MalformedRate, "malformed-rate", 0, "share of requests answered with invalid JSON")
	fs.Float64Var(&f.faults.TruncateRate, "truncate-rate", 0, "share of requests whose body is cut short")
	fs.Float64Var(&f.faults.RateLimitRate, "rate-limit-rate", 0, "share of requests answered 429")
	fs.StringArrayVar(&f.plunges, "plunge", nil, "stage a late plunge: RACE:RUNNER:MINUTES_BEFORE (repeatable)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return a.simulate(cmd.Context(), f) }
	return cmd
}

// simulate serves a simulated NZ TAB race day over HTTP until ctx ends.
func (a *app) simulate(ctx context.Context, f simulateFlags) error {
	if f.speed <= 0 {
		return usagef("--speed must be positive, got %g", f.speed)
	}
	day, begin, err := simulateDay(f.date, f.start, time.Now())
	if err != nil {
		return usagef("%v", err)
	}
	faults := f.faults
	if err := faults.Validate(); err != nil {
		return usagef("%v", err)
	}
	var plunges []nztabsim.Plunge
	for _, p := range f.plunges {
		pl, err := nztabsim.ParsePlunge(p)
		if err != nil {
			return usagef("--plunge: %v", err)
		}
		plunges = append(plunges, pl)
	}
	clock := nztabsim.NewSpeedClock(begin, f.speed, time.Now)
	sim, err := nztabsim.New(nztabsim.Config{
		Seed: f.seed, Date: day.String(), Meetings: f.meetings, ExtraMeetings: f.extra,
		RacesPerMeeting: f.races, Clock: clock, Plunges: plunges,
	})
	if err != nil {
		if errors.Is(err, nztabsim.ErrBadPlunge) {
			return usagef("--plunge: %v", err)
		}
		return usagef("%v", err)
	}
	if err := sim.SetFaults(faults); err != nil {
		return usagef("%v", err)
	}

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.addr, err)
	}
	// Handlers held by a timeout fault or a long latency wait on their
	// request context; cancelling the base context on shutdown frees them.
	serveCtx, cancelServe := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelServe()
	srv := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return serveCtx },
	}

	races0 := sim.Races()
	fmt.Fprintf(a.stdout, "NZ TAB simulator: http://%s/affiliates/v1\n", ln.Addr())
	fmt.Fprintf(a.stdout, "  day %s, seed %d, %d meetings, %d races, speed ×%g\n",
		sim.Date(), f.seed, len(sim.Meetings()), len(races0), clock.Speed())
	fmt.Fprintf(a.stdout, "  simulated time starts at %s\n", begin.In(nzday.Location()).Format(time.RFC3339))
	if faults != (nztabsim.Faults{}) {
		fmt.Fprintf(a.stdout, "  faults: %+v\n", faults)
	}
	for _, p := range sim.Plunges() {
		fmt.Fprintf(a.stdout, "  plunge: race %s runner %d, $%.0f at %s\n", p.RaceID, p.Runner, p.Bet,
			p.At.In(nzday.Location()).Format(time.RFC3339))
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	cancelServe()
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), simulateShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(a.stdout, "NZ TAB simulator stopped after %d requests\n", sim.Requests())
	return nil
}

// simulateDay resolves --date and --start: each defaults from the other,
// and both from now (today in NZ, at 11:30 NZ time).
func simulateDay(date, start string, now time.Time) (nzday.Day, time.Time, error) {
	var begin time.Time
	if start != "" {
		t, err := time.Parse(time.RFC3339, start)
		if err != nil {
			return nzday.Day{}, time.Time{}, fmt.Errorf("--start %q is not RFC3339: %w", start, err)
		}
		begin = t
	}
	var day nzday.Day
	switch {
	case date != "":
		d, err := nzday.Parse(date)
		if err != nil {
			return nzday.Day{}, time.Time{}, fmt.Errorf("--date: %w", err)
		}
		day = d
	case !begin.IsZero():
		day = nzday.Of(begin)
	default:
		day = nzday.Of(now)
	}
	if begin.IsZero() {
		begin = day.Start().Add(11*time.Hour + 30*time.Minute)
	}
	return day, begin, nil
}
