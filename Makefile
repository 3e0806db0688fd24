# Builds, tests and release archives of porthole. `make release` writes one
# static binary per platform into dist/ with SHA256SUMS; the same commit and
# VERSION give the same bytes (see docs/deploy.md, "Release builds").

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
PKG     := github.com/porthole/porthole/internal/version
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT)
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
GO ?= go

.PHONY: build test release clean

# build: ./porthole for this machine, stamped like a release.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o porthole ./cmd/porthole

# test: the README's test command.
test:
	$(GO) test -race -p 1 ./...

# release: dist/porthole-VERSION-OS-ARCH[.exe] and dist/SHA256SUMS.
release:
	rm -rf dist && mkdir -p dist
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		out=dist/porthole-$(VERSION)-$$os-$$arch$$ext; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=false \
			-ldflags "$(LDFLAGS)" -o $$out ./cmd/porthole; \
	done
	cd dist && sha256sum porthole-* > SHA256SUMS
	cat dist/SHA256SUMS

clean:
	rm -rf dist porthole
