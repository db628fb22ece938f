// Command raceflow keeps PostgreSQL current with live NZ TAB racing data.
// Each subcommand lives in its own file and only parses flags and calls into
// the packages that do the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: its one-line summary and what it runs.
type command struct {
	summary string
	run     func(ctx context.Context, app *app, args []string) error
}

// app carries what every command may need: its standard streams and the
// process environment, injected so commands can be tested.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// commands lists every subcommand; keep it sorted by name.
func commands() map[string]command {
	return map[string]command{
		"bench":     {"measure the pipeline: per-stage latency, batch wall time, throughput", runBench},
		"demo":      {"run the whole pipeline on a simulated race day (no configuration needed)", runDemo},
		"help":      {"show commands and configuration", runHelp},
		"migrate":   {"apply or inspect schema migrations: up | down | status | version", runMigrate},
		"poison":    {"inspect, requeue or purge messages that failed for good: list | show | requeue | purge", runPoison},
		"run":       {"continuous processing: baseline, scheduler, flow, metrics and health", runRun},
		"process":   {"poll the given races now through the whole flow and print one result each", runProcess},
		"replay":    {"re-derive the tables from stored raw fetches (race.fetched)", runReplay},
		"simulate":  {"serve a simulated NZ TAB race day with fault injection", runSimulate},
		"transform": {"print the snapshot the transform makes of one event payload (stdin)", runTransform},
	}
}

// errUsage marks a command-line mistake: the usage was printed, exit code 2.
var errUsage = errors.New("usage error")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	code := a.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// main runs one subcommand and maps its outcome to an exit code.
func (a *app) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		_ = runHelp(ctx, a, nil)
		return 2
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(a.stderr, "raceflow: unknown command %q (see raceflow help)\n", args[0])
		return 2
	}
	err := cmd.run(ctx, a, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(a.stderr, "raceflow %s: %v\n", args[0], err)
		return 1
	}
}

func runHelp(_ context.Context, a *app, _ []string) error {
	fmt.Fprintln(a.stdout, "raceflow: a stream-processing engine that keeps PostgreSQL current with NZ TAB racing data.")
	fmt.Fprintln(a.stdout, "\nUsage: raceflow <command> [flags]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(a.stdout, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(a.stdout, "\nRun 'raceflow <command> -h' for a command's flags. Configuration comes from")
	fmt.Fprintln(a.stdout, "environment variables (see README.md); flags override them.")
	return nil
}
