package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}}
	dirty := append(rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	for _, tc := range []struct {
		name         string
		v, c         string
		info         *debug.BuildInfo
		wantV, wantC string
	}{
		{"nothing", "dev", "", nil, "dev", ""},
		{"stamped wins", "v1.2.3", "feedface", &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}, Settings: rev}, "v1.2.3", "feedface"},
		{"go install", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.0.0"}}, "v1.0.0", ""},
		{"clone build", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev}, "dev", "0123456789ab"},
		{"dirty clone", "dev", "", &debug.BuildInfo{Settings: dirty}, "dev", "0123456789ab-dirty"},
		{"long stamped commit", "v2", "0123456789abcdef0123", nil, "v2", "0123456789ab"},
	} {
		v, c := resolve(tc.v, tc.c, tc.info)
		if v != tc.wantV || c != tc.wantC {
			t.Errorf("%s: got %q %q, want %q %q", tc.name, v, c, tc.wantV, tc.wantC)
		}
	}
}
