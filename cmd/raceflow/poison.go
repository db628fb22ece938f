package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
)

// poisonUsage lists the operations on the poison queue.
var poisonUsage = `Usage: raceflow poison <list|show|requeue|purge> [flags]

  list [--race ID] [--stage S] [--since D] [--limit N] [--json]
                                 messages that failed for good, newest first
  show [--json] ID               one message: metadata and decoded payload
  requeue ID... | --race ID | --all
                                 send messages back to the topic they failed on
  purge --older-than D           delete messages poisoned more than D ago

Durations take Go units or whole days (90m, 12h, 7d). Every subcommand takes
--namespace (the flow's topic namespace, default race) and the database flags.`

func runPoison(ctx context.Context, a *app, args []string) error {
	err := dispatchPoison(ctx, a, args)
	// main prints nothing for a usage error; say what was wrong, unless
	// the flag package already did.
	if errors.Is(err, errUsage) && !errors.Is(err, errFlagReported) {
		fmt.Fprintf(a.stderr, "raceflow poison: %v\n", err)
	}
	return err
}

// errFlagReported marks a flag error the flag package has printed.
var errFlagReported = errors.New("flag error reported")

func dispatchPoison(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(a.stderr, poisonUsage)
		return fmt.Errorf("%w: a subcommand is needed", errUsage)
	}
	switch args[0] {
	case "list":
		return runPoisonList(ctx, a, args[1:])
	case "show":
		return runPoisonShow(ctx, a, args[1:])
	case "requeue":
		return runPoisonRequeue(ctx, a, args[1:])
	case "purge":
		return runPoisonPurge(ctx, a, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(a.stdout, poisonUsage)
		return nil
	}
	fmt.Fprintln(a.stderr, poisonUsage)
	return fmt.Errorf("%w: unknown poison subcommand %q", errUsage, args[0])
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
		return err
	}
	if d < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	*v.d, v.set = d, true
	return nil
}

// poisonFlags parses a poison subcommand's flags, which may come before,
// after or between its arguments (requeue 12 13 --namespace demo), and
// returns the configuration, the namespace and the arguments.
func poisonFlags(a *app, fs *flag.FlagSet, args []string) (config.Config, string, []string, error) {
	ns := fs.String("namespace", "", "the flow's topic namespace (default RACEFLOW_NAMESPACE; demo uses demo)")
	cfg, err := config.Load(a.getenv)
	if err != nil {
		return cfg, "", nil, err
	}
	cfg.RegisterFlags(fs)
	fs.SetOutput(a.stderr)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return cfg, "", nil, err
			}
			return cfg, "", nil, fmt.Errorf("%w: %w: %v", errUsage, errFlagReported, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	if err := cfg.Validate(); err != nil {
		return cfg, "", nil, err
	}
	if *ns == "" {
		*ns = cfg.Namespace
	}
	if err := config.ValidNamespace(*ns); err != nil {
		return cfg, "", nil, fmt.Errorf("%w: --namespace: %v", errUsage, err)
	}
	return cfg, *ns, positional, nil
}

// withStore opens the poison queue of namespace's flow on the configured
// backend (RACEFLOW_PUBSUB) and runs fn.
func withStore(ctx context.Context, cfg config.Config, namespace string, fn func(driver.PoisonQueue) error) error {
	fcfg := flowConfig(cfg)
	fcfg.Namespace = namespace
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

func runPoisonList(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("poison list", flag.ContinueOnError)
	race := fs.String("race", "", "only this race")
	stage := fs.String("stage", "", "only this stage: fetch | transform | write")
	var since time.Duration
	sinceFlag := &durationValue{d: &since}
	fs.Var(sinceFlag, "since", "only messages poisoned within this long (e.g. 2h, 1d)")
	limit := fs.Int("limit", 50, "at most this many, newest first (0: all)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow poison list [--race ID] [--stage S] [--since D] [--limit N] [--json]")
		fs.PrintDefaults()
	}
	cfg, ns, rest, err := poisonFlags(a, fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 || *limit < 0 {
		fs.Usage()
		return fmt.Errorf("%w: list takes no arguments and a limit ≥ 0", errUsage)
	}
	f := driver.PoisonFilter{RaceID: *race, Stage: *stage, Limit: *limit}
	if sinceFlag.set {
		f.Since = time.Now().Add(-since)
	}
	return withStore(ctx, cfg, ns, func(s driver.PoisonQueue) error {
		msgs, err := s.List(ctx, f)
		if err != nil {
			return err
		}
		if *asJSON {
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

func runPoisonShow(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("poison show", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the message as one JSON object")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow poison show [--json] ID")
		fs.PrintDefaults()
	}
	cfg, ns, rest, err := poisonFlags(a, fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: show takes one ID", errUsage)
	}
	id, err := strconv.ParseInt(rest[0], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: ID %q is not a number (see raceflow poison list)", errUsage, rest[0])
	}
	return withStore(ctx, cfg, ns, func(s driver.PoisonQueue) error {
		m, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		payload, decodeErr := m.DecodedPayload()
		if *asJSON {
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

func runPoisonRequeue(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("poison requeue", flag.ContinueOnError)
	race := fs.String("race", "", "every message of this race")
	all := fs.Bool("all", false, "every message in the poison queue")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow poison requeue ID... | --race ID | --all\n\nSends messages back to the topic they failed on, with their original payload and metadata.")
		fs.PrintDefaults()
	}
	cfg, ns, rest, err := poisonFlags(a, fs, args)
	if err != nil {
		return err
	}
	sel := driver.PoisonSelector{RaceID: *race, All: *all}
	for _, s := range rest {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: ID %q is not a number (see raceflow poison list)", errUsage, s)
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
		fs.Usage()
		return fmt.Errorf("%w: give IDs, --race or --all (exactly one)", errUsage)
	}
	return withStore(ctx, cfg, ns, func(s driver.PoisonQueue) error {
		count, err := s.Requeue(ctx, sel)
		if err == nil || count > 0 { // a batched requeue can fail part-way
			fmt.Fprintf(a.stdout, "requeued %d message(s)\n", count)
		}
		return err
	})
}

func runPoisonPurge(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("poison purge", flag.ContinueOnError)
	var older time.Duration
	olderFlag := &durationValue{d: &older}
	fs.Var(olderFlag, "older-than", "delete messages poisoned more than this long ago (required; e.g. 7d)")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow poison purge --older-than D")
		fs.PrintDefaults()
	}
	cfg, ns, rest, err := poisonFlags(a, fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 || !olderFlag.set {
		fs.Usage()
		return fmt.Errorf("%w: purge needs --older-than and no arguments", errUsage)
	}
	cutoff := time.Now().Add(-older)
	return withStore(ctx, cfg, ns, func(s driver.PoisonQueue) error {
		n, err := s.Purge(ctx, cutoff)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "purged %d message(s) poisoned before %s\n", n, cutoff.UTC().Format(time.RFC3339))
		return nil
	})
}
