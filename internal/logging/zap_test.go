package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestZap(t *testing.T) {
	var buf bytes.Buffer
	zl := Zap(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "certmagic")
	zl.Named("obtain").Info("chatty step")
	zl.Named("obtain").With(zap.String("identifier", "a.example")).Warn("could not get certificate", zap.String("error", "boom"))
	out := buf.String()
	if strings.Contains(out, "chatty step") {
		t.Errorf("info lines should be debug here:\n%s", out)
	}
	for _, want := range []string{"level=WARN", `msg="could not get certificate"`, "certmagic=obtain", "identifier=a.example", "error=boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
