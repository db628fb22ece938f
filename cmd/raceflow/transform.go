package main

import (
	"encoding/json"
	"fmt"
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
so a payload can be debugged without a database or a pipeline.`,
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
