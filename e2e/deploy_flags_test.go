package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// composeFlagRE: a flag in a compose file's command list ("- --x=...").
	composeFlagRE = regexp.MustCompile(`^\s*-\s+(--[a-z][a-z0-9-]*)`)
	// execStartRE: a systemd unit's command line running porthole.
	execStartRE = regexp.MustCompile(`^ExecStart=\S*porthole\s+(\S+)(.*)$`)
	flagRE      = regexp.MustCompile(`(?:^|\s)(--[a-z][a-z0-9-]*)`)
)

// TestDeployFlagsExist checks that every flag the files in deploy/ pass
// to porthole is one the built binary's command takes, so a renamed flag
// cannot leave a unit or compose file that fails at start.
func TestDeployFlagsExist(t *testing.T) {
	uses := map[string]map[string]bool{} // command -> flags
	add := func(cmd, flag string) {
		if uses[cmd] == nil {
			uses[cmd] = map[string]bool{}
		}
		uses[cmd][flag] = true
	}
	compose, _ := filepath.Glob("../deploy/compose/*.yml")
	units, _ := filepath.Glob("../deploy/systemd/*.service")
	if len(compose) < 2 || len(units) < 2 {
		t.Fatalf("deploy files: %v %v", compose, units)
	}
	for _, f := range compose {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if m := composeFlagRE.FindStringSubmatch(line); m != nil {
				add("server", m[1]) // every porthole service in deploy/ is a server
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s: no porthole flags found", f)
		}
	}
	for _, f := range units {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			m := execStartRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			found = true
			for _, fm := range flagRE.FindAllStringSubmatch(m[2], -1) {
				add(m[1], fm[1])
			}
		}
		if !found {
			t.Errorf("%s: no ExecStart running porthole", f)
		}
	}
	for cmd, flags := range uses {
		out, errOut, code := runPorthole(t, cmd, "--help")
		if code != 0 {
			t.Fatalf("porthole %s --help: exit %d\n%s", cmd, code, errOut)
		}
		for flag := range flags {
			if !regexp.MustCompile(`(?m)^\s+(-\w, )?` + regexp.QuoteMeta(flag) + `\b`).MatchString(out) {
				t.Errorf("deploy/ passes %s to porthole %s, which has no such flag", flag, cmd)
			}
		}
	}
}
