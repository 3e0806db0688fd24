// Package version holds the build's version and commit, set at link time:
//
//	-ldflags "-X github.com/porthole/porthole/internal/version.Version=v1.2.3
//	          -X github.com/porthole/porthole/internal/version.Commit=abc123"
//
// Without them it falls back to what the Go toolchain recorded: the module
// version of `go install ...@v1.2.3` and the VCS revision of a build in a
// clone.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is the release version, or "dev".
var Version = "dev"

// Commit is the VCS revision the binary was built from, or empty.
var Commit = ""

// String returns the version with the commit when known: "v1.2.3 (abc123def456)".
func String() string {
	v, c := resolve(Version, Commit, readBuildInfo())
	if c == "" {
		return v
	}
	return v + " (" + c + ")"
}

// readBuildInfo is the toolchain's record, or nil.
func readBuildInfo() *debug.BuildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return info
}

// resolve fills a missing version or commit from the build info; a stamped
// value always wins. Commits are shortened to 12 hex digits, like git's
// abbreviated form, so both sources print alike.
func resolve(v, c string, info *debug.BuildInfo) (string, string) {
	if info != nil {
		if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		if c == "" {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
			for _, s := range info.Settings {
				if s.Key == "vcs.modified" && s.Value == "true" && c != "" {
					c = short(c) + "-dirty"
					return v, c
				}
			}
		}
	}
	return v, short(c)
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// Long is what `porthole version` prints after the name: the version, the
// commit ("unknown" when neither stamped nor recorded) and the toolchain.
func Long() string {
	v, c := resolve(Version, Commit, readBuildInfo())
	if c == "" {
		c = "unknown"
	}
	return v + " (commit " + c + ", " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
