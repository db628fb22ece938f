package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/nzday"
)

// simulateShutdownTimeout bounds how long in-flight requests may finish
// after the command is told to stop.
const simulateShutdownTimeout = 5 * time.Second

// runSimulate serves a simulated NZ TAB race day over HTTP until ctx ends.
func runSimulate(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (port 0 picks a free port)")
	seed := fs.Int64("seed", 1, "seed of the simulated day: the same seed and date give the same day")
	speed := fs.Float64("speed", 1, "simulated seconds per real second")
	date := fs.String("date", "", "NZ racing day YYYY-MM-DD (default: today in NZ, or the day of --start)")
	start := fs.String("start", "", "simulated instant to start at, RFC3339 (default: 11:30 NZ time on --date)")
	meetings := fs.Int("meetings", nztabsim.DefaultMeetings, "NZ/AUS thoroughbred and harness meetings")
	extra := fs.Int("extra-meetings", nztabsim.DefaultExtraMeetings, "greyhound and overseas meetings a baseline must filter out (negative: none)")
	races := fs.Int("races", nztabsim.DefaultRacesPerMeeting, "races per meeting")
	latency := fs.Duration("latency", 0, "delay added to every response (real time)")
	errRate := fs.Float64("error-rate", 0, "share of requests answered 500")
	timeoutRate := fs.Float64("timeout-rate", 0, "share of requests never answered")
	malformedRate := fs.Float64("malformed-rate", 0, "share of requests answered with invalid JSON")
	truncateRate := fs.Float64("truncate-rate", 0, "share of requests whose body is cut short")
	rateLimitRate := fs.Float64("rate-limit-rate", 0, "share of requests answered 429")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow simulate [flags]")
		fmt.Fprintln(a.stderr, "\nServes a simulated NZ TAB race day on the Affiliates API paths, evolving with")
		fmt.Fprintln(a.stderr, "simulated time; point NZTAB_API_URL at the printed base URL. A request can force a")
		fmt.Fprintln(a.stderr, "fault with the header X-Sim-Fault: 500|timeout|malformed|truncate|429|404.")
		fmt.Fprintln(a.stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *speed <= 0 {
		return fmt.Errorf("%w: --speed must be positive, got %g", errUsage, *speed)
	}

	day, begin, err := simulateDay(*date, *start, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	faults := nztabsim.Faults{
		Latency: *latency, ErrorRate: *errRate, TimeoutRate: *timeoutRate,
		MalformedRate: *malformedRate, TruncateRate: *truncateRate, RateLimitRate: *rateLimitRate,
	}
	if err := faults.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	clock := nztabsim.NewSpeedClock(begin, *speed, time.Now)
	sim, err := nztabsim.New(nztabsim.Config{
		Seed: *seed, Date: day.String(), Meetings: *meetings, ExtraMeetings: *extra,
		RacesPerMeeting: *races, Clock: clock,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := sim.SetFaults(faults); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
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
		sim.Date(), *seed, len(sim.Meetings()), len(races0), clock.Speed())
	fmt.Fprintf(a.stdout, "  simulated time starts at %s\n", begin.In(nzday.Location()).Format(time.RFC3339))
	if faults != (nztabsim.Faults{}) {
		fmt.Fprintf(a.stdout, "  faults: %+v\n", faults)
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
