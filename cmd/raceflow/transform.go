package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
)

func (a *app) transformCommand() *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "transform [--at RFC3339] < event.json",
		Short: "print the snapshot the transform makes of one event payload (stdin)",
		Long: `Reads one /racing/events/{id} response on stdin and prints its snapshot as JSON,
so a payload can be debugged without a database or a pipeline. The payload is
decoded and checked as the flow does it: one the flow would refuse is refused
here, with the same error.`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&at, "at", "", "observation time, RFC3339 (default: now); drives time_to_start and history timestamps")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		observedAt := time.Now()
		if at != "" {
			t, err := time.Parse(time.RFC3339Nano, at)
			if err != nil {
				return usagef("--at %q is not an RFC 3339 time such as 2025-07-17T00:40:00Z", at)
			}
			observedAt = t
		}
		return a.transform(observedAt)
	}
	return cmd
}

// transform prints the snapshot of the event payload on stdin.
func (a *app) transform(observedAt time.Time) error {
	body, err := io.ReadAll(io.LimitReader(a.stdin, nztab.DefaultMaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read event from stdin: %w", err)
	}
	if len(body) > nztab.DefaultMaxBodyBytes {
		return fmt.Errorf("read event from stdin: larger than the flow accepts (%d bytes)", nztab.DefaultMaxBodyBytes)
	}
	ev, err := nztab.DecodeEvent(body)
	if err != nil {
		return err
	}
	snap, err := transform.Transform(ev, observedAt)
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
