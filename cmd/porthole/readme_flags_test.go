package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// readmeTable returns the rows of the first flag table after heading in
// README.md, as their cells.
func readmeTable(t *testing.T, readme, heading string) [][]string {
	t.Helper()
	i := strings.Index(readme, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	var rows [][]string
	in := false
	for _, line := range strings.Split(readme[i+1:], "\n") {
		if strings.HasPrefix(line, "| flag |") {
			in = true
			continue
		}
		if !in || strings.HasPrefix(line, "|---") {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		t.Fatalf("README's %q section has no flag table", heading)
	}
	return rows
}

var (
	flagNameRe = regexp.MustCompile("--([a-z0-9-]+)")
	backtickRe = regexp.MustCompile("`([^`]*)`")
)

// commandFlags returns the visible flags of cmd, its inherited ones
// included, by name.
func commandFlags(cmd *cobra.Command) map[string]*pflag.Flag {
	m := map[string]*pflag.Flag{}
	add := func(f *pflag.Flag) {
		if !f.Hidden && f.Name != "help" {
			m[f.Name] = f
		}
	}
	cmd.LocalFlags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	return m
}

// TestREADMEFlagTables holds the README's server and client flag tables
// to the commands' flags: every flag of `porthole server`, `http` and
// `tcp` has a row, every row names real flags of the commands it is for
// ("(http)" or "(tcp)" when only one), and a default the row states in
// code is the flag's default, or one its help text names ("http1 when
// unset", "$PORTHOLE_TOKEN"); "off" is false, 0 or empty. The admin
// command's own flags appear in its section.
func TestREADMEFlagTables(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var g globalFlags
	var running bool
	root := newRootCmd(&g, &running)
	find := func(name string) *cobra.Command {
		c, _, err := root.Find([]string{name})
		if err != nil || c.Name() != name {
			t.Fatalf("no %s command: %v", name, err)
		}
		return c
	}

	check := func(heading string, cmds map[string]map[string]*pflag.Flag) {
		listed := map[string]bool{}
		for _, row := range readmeTable(t, readme, heading) {
			if len(row) != 3 {
				t.Errorf("%s: row %q has %d cells, want 3", heading, row, len(row))
				continue
			}
			var names []string
			for _, m := range flagNameRe.FindAllStringSubmatch(row[0], -1) {
				names = append(names, m[1])
			}
			if len(names) == 0 {
				t.Errorf("%s: row %q names no flag", heading, row[0])
				continue
			}
			// Which commands the row is for.
			var for_ []string
			for cmd := range cmds {
				if strings.HasPrefix(row[1], "("+cmd) {
					for_ = append(for_, cmd)
				}
			}
			if len(for_) == 0 {
				for cmd := range cmds {
					for_ = append(for_, cmd)
				}
			}
			defaults := backtickRe.FindAllStringSubmatch(row[2], -1)
			for k, name := range names {
				listed[name] = true
				for _, cmd := range for_ {
					f, ok := cmds[cmd][name]
					if !ok {
						t.Errorf("%s: README lists --%s for %s, which has no such flag", heading, name, cmd)
						continue
					}
					switch {
					case row[2] == "off":
						if f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "" {
							t.Errorf("%s: README gives --%s the default off; %s's is %q (%s)", heading, name, cmd, f.DefValue, f.Value.Type())
						}
					case len(defaults) == len(names):
						want := defaults[k][1]
						if want != f.DefValue && !strings.Contains(f.Usage, want) {
							t.Errorf("%s: README gives --%s the default %q; %s's is %q: %s", heading, name, want, cmd, f.DefValue, f.Usage)
						}
					}
				}
			}
		}
		for cmd, flags := range cmds {
			var missing []string
			for name := range flags {
				if !listed[name] {
					missing = append(missing, "--"+name)
				}
			}
			slices.Sort(missing)
			if len(missing) > 0 {
				t.Errorf("%s: README's table lacks %s flags %s", heading, cmd, strings.Join(missing, ", "))
			}
		}
	}
	check("### Server", map[string]map[string]*pflag.Flag{"server": commandFlags(find("server"))})
	check("### Client", map[string]map[string]*pflag.Flag{"http": commandFlags(find("http")), "tcp": commandFlags(find("tcp"))})

	admin := readme[strings.Index(readme, "\n### Admin\n"):]
	admin = admin[:strings.Index(admin[1:], "\n### ")+1]
	find("admin").LocalFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(admin, "`--"+f.Name) {
			t.Errorf("README's Admin section does not mention admin's --%s", f.Name)
		}
	})
}
