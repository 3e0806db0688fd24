package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// defaultRe finds a "(default X)" that a usage line prints.
var defaultRe = regexp.MustCompile(`\(default ([^)]*)\)`)

// TestHelpDefaults renders the flag usage of every command and fails on a
// line that states a default twice or a default that is not the flag's.
func TestHelpDefaults(t *testing.T) {
	var g globalFlags
	var running bool
	root := newRootCmd(&g, &running)
	n := 0
	walk(root, func(cmd *cobra.Command) {
		check := func(fs *pflag.FlagSet) {
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Hidden {
					return
				}
				n++
				one := pflag.NewFlagSet("one", pflag.ContinueOnError)
				one.AddFlag(f)
				line := strings.TrimSpace(one.FlagUsages())
				if c := strings.Count(line, "(default"); c > 1 {
					t.Errorf("%s --%s states its default %d times: %s", cmd.CommandPath(), f.Name, c, line)
				}
				for _, m := range defaultRe.FindAllStringSubmatch(line, -1) {
					want := f.DefValue
					if f.Value.Type() == "string" {
						want = `"` + want + `"`
					}
					if m[1] != want && m[1] != f.DefValue {
						t.Errorf("%s --%s prints (default %s) but its default is %q: %s", cmd.CommandPath(), f.Name, m[1], f.DefValue, line)
					}
				}
			})
		}
		check(cmd.LocalFlags())
		check(cmd.InheritedFlags())
	})
	if n < 50 {
		t.Fatalf("checked only %d flags; the walk missed commands", n)
	}
	t.Logf("checked %d flag usages", n)
}

func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}
