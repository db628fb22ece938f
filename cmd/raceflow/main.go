// Command raceflow keeps PostgreSQL current with live NZ TAB racing data.
// Each subcommand lives in its own file and only parses flags and calls into
// the packages that do the work; this file builds the command tree and maps
// outcomes to exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/replay"
)

// Exit codes, documented in the root help and the README.
const (
	exitOK      = 0 // everything asked for was done
	exitFailed  = 1 // something failed (or a bad environment, or an interrupt)
	exitUsage   = 2 // the command line is wrong: nothing was done
	exitSkipped = 3 // nothing failed, but something was skipped or not found
)

const exitCodesHelp = `Exit codes:
  0  everything asked for was done (every race processed)
  1  something failed: a poll, the database, the API, a bad environment variable
  2  usage error: the command line is wrong and nothing was done
  3  nothing failed but something was skipped or not found: a race the API does
     not know or could not be reached, an id not in the poison queue, no stored
     poll to replay`

// app carries what every command may need: its standard streams and the
// process environment, injected so commands can be tested.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// args is the command line as given (without the program name).
	args []string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	code := a.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// main runs the command line args and returns the exit code. Every error
// is printed as one line naming the command; a usage error also says where
// help is.
func (a *app) main(ctx context.Context, args []string) int {
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	a.args = args
	root := a.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	code := exitCode(err)
	if code == exitUsage {
		helpFor := cmd
		if cmd.Name() == "help" {
			helpFor = cmd.Root()
		}
		msg += fmt.Sprintf(" (see '%s --help')", helpFor.CommandPath())
	}
	fmt.Fprintf(a.stderr, "%s: %s\n", cmd.CommandPath(), msg)
	return code
}

// exitCode maps a command's error to the documented exit code.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errSkipped), errors.Is(err, driver.ErrPoisonNotFound), errors.Is(err, replay.ErrRunNotFound):
		return exitSkipped
	}
	return exitFailed
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errSkipped makes the exit code 3: nothing failed, something was skipped
// or not found.
var errSkipped = errors.New("skipped")

// skipError is an errSkipped with its own message.
type skipError struct{ msg string }

func (e *skipError) Error() string        { return e.msg }
func (e *skipError) Is(target error) bool { return target == errSkipped }

// skippedf returns an error that makes the exit code 3.
func skippedf(format string, args ...any) error {
	return &skipError{msg: fmt.Sprintf(format, args...)}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "raceflow",
		Short: "keep PostgreSQL current with NZ TAB racing data",
		Long: `raceflow is a stream-processing engine that keeps PostgreSQL current with live
NZ TAB racing data: every poll of a race flows fetch → transform → write.

Configuration comes from environment variables (DATABASE_URL, NZTAB_API_URL,
RACEFLOW_PUBSUB, RACEFLOW_NAMESPACE, ...; see README.md); each command's flags
override them and show their current values as defaults. Flags may come before,
between or after arguments; -- ends the flags.`,
		Example: `  raceflow demo                       # a simulated race day, end to end
  raceflow races                      # today's meetings and races, with their ids
  raceflow process RACE_ID --json     # poll one race now
  raceflow help process               # a command's flags`,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp + "\n")
	root.AddCommand(
		a.benchCommand(),
		a.demoCommand(),
		a.migrateCommand(),
		a.poisonCommand(),
		a.processCommand(),
		a.racesCommand(),
		a.replayCommand(),
		a.runCommand(),
		a.simulateCommand(),
		a.transformCommand(),
		a.versionCommand(),
	)
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usagef("unknown help topic %q", strings.Join(args, " "))
			}
			return target.Help()
		},
	})
	return root
}

// noArgs rejects any argument: for commands without arguments, and for
// commands with subcommands, where an argument is an unknown subcommand.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return usagef("unknown command %q", args[0])
	}
	return usagef("unexpected argument %q", args[0])
}

// subcommands returns the Args and RunE of a command that only groups
// subcommands: no subcommand or an unknown one is a usage error that lists
// them.
func subcommands(what string) (cobra.PositionalArgs, func(*cobra.Command, []string) error) {
	list := func(cmd *cobra.Command) string {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return strings.Join(names, ", ")
	}
	args := func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown %s %q; want one of %s", what, args[0], list(cmd))
		}
		return nil
	}
	run := func(cmd *cobra.Command, _ []string) error {
		return usagef("a %s is needed: one of %s", what, list(cmd))
	}
	return args, run
}

// operands checks a command's positional arguments: a token that starts
// with '-' before "--" is a mistyped flag, never an id; at least min
// (0 or 1) of them, and at most max (max < 0: any number).
func operands(name string, min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		dash := cmd.ArgsLenAtDash()
		for i, arg := range args {
			if strings.HasPrefix(arg, "-") && (dash < 0 || i < dash) {
				return usagef("%q is not a flag of %s (use -- before an argument that starts with -)", arg, cmd.CommandPath())
			}
		}
		switch {
		case len(args) < min:
			return usagef("%s is needed", name)
		case max >= 0 && len(args) > max:
			return usagef("unexpected argument %q", args[max])
		}
		return nil
	}
}

// settings is the configuration a command reads: the environment, with the
// command's configuration flags bound over it.
type settings struct {
	cfg     config.Config
	loadErr error
}

// bindConfig binds the configuration flags which on cmd; resolve returns
// the validated configuration once the flags are parsed.
func (a *app) bindConfig(cmd *cobra.Command, which config.Flags) *settings {
	s := &settings{}
	s.cfg, s.loadErr = config.Load(a.getenv)
	s.cfg.BindFlags(cmd.Flags(), which)
	return s
}

// resolve validates the configuration: a bad value from a flag is a usage
// error, a bad environment variable a failure.
func (s *settings) resolve(cmd *cobra.Command) (config.Config, error) {
	if s.loadErr != nil {
		return s.cfg, s.loadErr
	}
	if err := s.cfg.CheckFlags(cmd.Flags()); err != nil {
		if config.FromFlag(err) {
			return s.cfg, &usageError{msg: strings.ReplaceAll(err.Error(), "\n", "; ")}
		}
		return s.cfg, err
	}
	return s.cfg, nil
}
