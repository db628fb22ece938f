package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the module version, the commit and the Go version it was built with",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return err
		},
	}
}

// versionString is the build's module version, commit and Go version, from
// the build information the Go toolchain embeds.
func versionString() string {
	version, commit := "(unknown)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		if rev != "" {
			commit = rev
			if len(commit) > 12 {
				commit = commit[:12]
			}
			if at != "" || modified != "" {
				commit += " (" + strings.TrimPrefix(at+modified, ", ") + ")"
			}
		}
	}
	return fmt.Sprintf("raceflow %s\ncommit   %s\ngo       %s %s/%s", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
