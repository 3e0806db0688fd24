// Package version holds the build's version, set at link time with
// -ldflags "-X github.com/porthole/porthole/internal/version.Version=v1.2.3".
package version

import "runtime/debug"

// Version is the release version, or "dev".
var Version = "dev"

// String returns the version with the VCS revision when known.
func String() string {
	v := Version
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}
