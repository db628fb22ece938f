package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

func (a *app) poisonCommand() *cobra.Command {
	args, run := subcommands("poison subcommand")
	cmd := &cobra.Command{
		Use:   "poison list|show|requeue|purge",
		Short: "inspect, requeue or purge messages that failed for good: list | show | requeue | purge",
		Long: `Inspects, requeues or purges the flow's poison queue: messages that failed for
good, on the backend RACEFLOW_PUBSUB names (postgres or nats) and the flow's
namespace (RACEFLOW_NAMESPACE; the demo's flow is --namespace demo).
Durations take Go units or whole days (90m, 12h, 7d).`,
		Args: args,
		RunE: run,
	}
	cmd.AddCommand(a.poisonListCommand(), a.poisonShowCommand(), a.poisonRequeueCommand(), a.poisonPurgeCommand())
	return cmd
}

// poisonSettings binds the configuration a poison subcommand reads.
func (a *app) poisonSettings(cmd *cobra.Command) *settings {
	return a.bindConfig(cmd, config.FlagDatabase|config.FlagBackend|config.FlagNamespace)
}

// durationValue is a flag taking config.ParseDuration's syntax (7d).
type durationValue struct {
	d   *time.Duration
	set bool
}

func (v *durationValue) String() string {
	if v.d == nil || !v.set {
		return ""
	}
	return v.d.String()
}

func (v *durationValue) Set(s string) error {
	d, err := config.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration such as 90m, 12h or 7d")
	}
	if d < 0 {
		return fmt.Errorf("must not be negative")
	}
	*v.d, v.set = d, true
	return nil
}

func (v *durationValue) Type() string { return "duration" }

// withStore opens the poison queue of namespace's flow on the configured
// backend (RACEFLOW_PUBSUB) and runs fn.
func withStore(ctx context.Context, cfg config.Config, fn func(driver.PoisonQueue) error) error {
	fcfg := flowConfig(cfg)
	var pool *pgxpool.Pool
	if cfg.DatabaseURL != "" { // a backend on another broker needs no database here
		var err error
		if pool, err = openPool(ctx, cfg); err != nil {
			return err
		}
		defer pool.Close()
	}
	drv, err := flows.OpenDriver(fcfg, pool, newLogger(cfg, io.Discard))
	if err != nil {
		return err
	}
	defer drv.Close()
	if !drv.Durable() {
		return fmt.Errorf("the %s backend keeps its poison queue inside the process that ran the flow; nothing to inspect from here", fcfg.Backend)
	}
	return fn(drv.Poison())
}

func (a *app) poisonListCommand() *cobra.Command {
	var (
		race, stage string
		since       time.Duration
		limit       int
		asJSON      bool
	)
	sinceFlag := &durationValue{d: &since}
	cmd := &cobra.Command{
		Use:   "list [--race ID] [--stage S] [--since D] [--limit N] [--json]",
		Short: "messages that failed for good, newest first",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&race, "race", "", "only this race")
	fs.StringVar(&stage, "stage", "", "only this stage: fetch | transform | write | detect")
	fs.Var(sinceFlag, "since", "only messages poisoned within this long (e.g. 2h, 1d)")
	fs.IntVar(&limit, "limit", 50, "at most this many, newest first (0: all)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	set := a.poisonSettings(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		if limit < 0 {
			return usagef("--limit must be 0 (all) or more, got %d", limit)
		}
		switch stage {
		case "", handlers.StageFetch, handlers.StageTransform, handlers.StageWrite, handlers.StageDetect:
		default:
			return usagef("--stage %q: want fetch, transform, write or detect", stage)
		}
		f := driver.PoisonFilter{RaceID: race, Stage: stage, Limit: limit}
		if sinceFlag.set {
			f.Since = time.Now().Add(-since)
		}
		ctx := cmd.Context()
		return withStore(ctx, cfg, func(s driver.PoisonQueue) error {
			msgs, err := s.List(ctx, f)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				for _, m := range msgs {
					if err := enc.Encode(m); err != nil {
						return err
					}
				}
				return nil
			}
			return printPoisonList(a.stdout, msgs)
		})
	}
	return cmd
}

func printPoisonList(w io.Writer, msgs []driver.PoisonMessage) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "the poison queue is empty (for these filters)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWHEN (UTC)\tRACE\tSTAGE\tKIND\tTOPIC\tREQUEUED\tREASON")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.CreatedAt.UTC().Format(time.DateTime), m.RaceID,
			m.Stage, m.Kind, m.Topic, m.Requeued, truncate(m.Reason, 80))
	}
	return tw.Flush()
}

// truncate shortens s to at most n runes on one line, cutting the middle:
// a wrapped error names the poll at its start and the cause at its end.
func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	head := n / 3
	return string(r[:head]) + "…" + string(r[len(r)-(n-head-1):])
}

func (a *app) poisonShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "one message: metadata and decoded payload",
		Args:  operands("an ID", 1, 1),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the message as one JSON object")
	set := a.poisonSettings(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return usagef("ID %q is not a number", args[0])
		}
		ctx := cmd.Context()
		return withStore(ctx, cfg, func(s driver.PoisonQueue) error {
			m, err := s.Get(ctx, id)
			if err != nil {
				return err
			}
			payload, decodeErr := m.DecodedPayload()
			if asJSON {
				out := struct {
					driver.PoisonMessage
					Payload     any    `json:"payload"`
					DecodeError string `json:"decode_error,omitempty"`
				}{PoisonMessage: m}
				switch {
				case decodeErr != nil:
					out.DecodeError = decodeErr.Error()
				case json.Valid(payload):
					out.Payload = json.RawMessage(payload)
				default:
					out.Payload = string(payload)
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printPoisonMessage(a.stdout, m, payload, decodeErr)
			return nil
		})
	}
	return cmd
}

func printPoisonMessage(w io.Writer, m driver.PoisonMessage, payload []byte, decodeErr error) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%d\n", m.ID)
	fmt.Fprintf(tw, "uuid:\t%s\n", m.UUID)
	fmt.Fprintf(tw, "poisoned:\t%s (%s ago)\n", m.CreatedAt.UTC().Format(time.RFC3339), time.Since(m.CreatedAt).Round(time.Second))
	fmt.Fprintf(tw, "race:\t%s\n", m.RaceID)
	fmt.Fprintf(tw, "poll:\t%s\n", m.PollID)
	fmt.Fprintf(tw, "stage:\t%s (%s)\n", m.Stage, m.Kind)
	fmt.Fprintf(tw, "topic:\t%s\n", m.Topic)
	fmt.Fprintf(tw, "requeued:\t%d\n", m.Requeued)
	fmt.Fprintf(tw, "reason:\t%s\n", m.Reason)
	_ = tw.Flush()
	fmt.Fprintln(w, "\nmetadata:")
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%s\n", k, m.Metadata[k])
	}
	_ = tw.Flush()
	switch {
	case decodeErr != nil:
		fmt.Fprintf(w, "\npayload (%d bytes stored) could not be decoded: %v\n", len(m.Payload), decodeErr)
	case utf8.Valid(payload):
		fmt.Fprintf(w, "\npayload (%d bytes stored, %d decoded):\n%s\n", len(m.Payload), len(payload), payload)
	default:
		fmt.Fprintf(w, "\npayload (%d bytes stored, not text):\n%q\n", len(m.Payload), payload)
	}
}

func (a *app) poisonRequeueCommand() *cobra.Command {
	var (
		race string
		all  bool
	)
	cmd := &cobra.Command{
		Use:   "requeue ID... | --race ID | --all",
		Short: "send messages back to the topic they failed on",
		Long:  "Sends messages back to the topic they failed on, with their original payload and metadata.",
		Args:  operands("an ID", 0, -1),
	}
	fs := cmd.Flags()
	fs.StringVar(&race, "race", "", "every message of this race")
	fs.BoolVar(&all, "all", false, "every message in the poison queue")
	set := a.poisonSettings(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		sel := driver.PoisonSelector{RaceID: race, All: all}
		for _, s := range args {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return usagef("ID %q is not a number", s)
			}
			sel.IDs = append(sel.IDs, id)
		}
		n := 0
		for _, set := range []bool{len(sel.IDs) > 0, sel.RaceID != "", sel.All} {
			if set {
				n++
			}
		}
		if n != 1 {
			return usagef("give IDs, --race or --all (exactly one)")
		}
		ctx := cmd.Context()
		return withStore(ctx, cfg, func(s driver.PoisonQueue) error {
			count, err := s.Requeue(ctx, sel)
			if err == nil || count > 0 { // a batched requeue can fail part-way
				fmt.Fprintf(a.stdout, "requeued %d message(s)\n", count)
			}
			if err == nil && count == 0 {
				return skippedf("no message matched; nothing requeued")
			}
			return err
		})
	}
	return cmd
}

func (a *app) poisonPurgeCommand() *cobra.Command {
	var older time.Duration
	olderFlag := &durationValue{d: &older}
	cmd := &cobra.Command{
		Use:   "purge --older-than D",
		Short: "delete messages poisoned more than D ago",
		Args:  noArgs,
	}
	cmd.Flags().Var(olderFlag, "older-than", "delete messages poisoned more than this long ago (required; e.g. 7d)")
	set := a.poisonSettings(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		if !olderFlag.set {
			return usagef("--older-than is needed (e.g. --older-than 7d)")
		}
		cutoff := time.Now().Add(-older)
		ctx := cmd.Context()
		return withStore(ctx, cfg, func(s driver.PoisonQueue) error {
			n, err := s.Purge(ctx, cutoff)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "purged %d message(s) poisoned before %s\n", n, cutoff.UTC().Format(time.RFC3339))
			return nil
		})
	}
	return cmd
}
