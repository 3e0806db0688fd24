// Command porthole is a self-hosted tunnel: `porthole server` on a public
// machine, `porthole http 3000` on a laptop. This package only wires flags
// and configuration files to the internal packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/logging"
	"github.com/porthole/porthole/internal/version"
)

// usageError marks a command-line mistake: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type globalFlags struct {
	logFormat string
	logLevel  string
	closers   []func() // flush the loggers on exit
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var g globalFlags
	running := false
	root := newRootCmd(&g, &running)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	for _, c := range g.closers {
		c()
	}
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "porthole:", strings.TrimSpace(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || !running {
		fmt.Fprintln(stderr, "Run 'porthole --help' for usage.")
		return 2
	}
	return 1
}

// newRootCmd builds the command tree; *running turns true once a command
// starts (errors before that are usage errors).
func newRootCmd(g *globalFlags, running *bool) *cobra.Command {
	root := &cobra.Command{
		Use:           "porthole",
		Short:         "A self-hosted tunnel: expose a local app at a public URL on your own domain",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			*running = true
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		serverCmd(g),
		clientCmd(g, "http"),
		clientCmd(g, "tcp"),
		startCmd(g),
		statusCmd(),
		demoCmd(g),
		configCmd(),
		withSubcommands(adminCmd(g), adminSessionsCmd()),
		versionCmd(),
	)
	return root
}

// logger builds the process logger on w; run flushes it before exiting.
func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	log, closeLog, err := logging.New(w, g.logFormat, level)
	if err != nil {
		return nil, usageError{err}
	}
	g.closers = append(g.closers, closeLog)
	return log, nil
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go toolchain",
		Args:  noArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "porthole", version.Long())
		},
	}
}

func withSubcommands(parent *cobra.Command, children ...*cobra.Command) *cobra.Command {
	parent.AddCommand(children...)
	return parent
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}
