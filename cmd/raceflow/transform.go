package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
)

// runTransform prints the snapshot one event payload (stdin) transforms to,
// so a payload can be debugged without a database or a pipeline.
func runTransform(_ context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("transform", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	at := fs.String("at", "", "observation time, RFC3339 (default: now); drives time_to_start and history timestamps")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow transform [--at RFC3339] < event.json")
		fmt.Fprintln(a.stderr, "\nReads one /racing/events/{id} response on stdin and prints its snapshot as JSON.")
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
	observedAt := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return fmt.Errorf("%w: --at %q is not RFC3339: %v", errUsage, *at, err)
		}
		observedAt = t
	}

	var ev nztab.EventResponse
	if err := json.NewDecoder(a.stdin).Decode(&ev); err != nil {
		return fmt.Errorf("decode event from stdin: %w", err)
	}
	snap, err := transform.Transform(&ev, observedAt)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(snap); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}
