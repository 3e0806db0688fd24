package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVersionStamped builds the binary the way `make release` does and
// checks that `porthole version` prints the stamped version and commit.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "porthole")
	const pkg = "github.com/porthole/porthole/internal/version"
	ldflags := "-s -w -X " + pkg + ".Version=v9.8.7-test -X " + pkg + ".Commit=0123456789abcdef0123456789abcdef01234567"
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin, ".")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("porthole version: %v\n%s", err, out)
	}
	want := "porthole v9.8.7-test (commit 0123456789ab, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if string(out) != want {
		t.Fatalf("porthole version printed %q, want %q", out, want)
	}
	out, err = exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v9.8.7-test (0123456789ab)") {
		t.Fatalf("porthole --version: %v %q", err, out)
	}
}
