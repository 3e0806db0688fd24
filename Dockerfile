# porthole in a small image: a static binary, CA roots and an empty data
# directory on scratch, run as an unprivileged user.
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) -t porthole .
#   docker run --rm porthole version
#
# See docs/deploy.md, "Container image".

ARG GO_IMAGE=golang:1.26.8-bookworm

FROM ${GO_IMAGE} AS build
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
# Modules first, so a change to the code reuses the downloaded modules.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/porthole/porthole/internal/version.Version=${VERSION} -X github.com/porthole/porthole/internal/version.Commit=${COMMIT}" \
      -o /out/porthole ./cmd/porthole \
 && mkdir -p /out/data

FROM scratch
# CA roots: for ACME, a DNS provider's API and clients dialing wss:// servers.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/porthole /usr/local/bin/porthole
# The state directory (SQLite database, certificates), owned by the user
# the server runs as; mount a volume here to keep it.
COPY --from=build --chown=65532:65532 /out/data /var/lib/porthole
USER 65532:65532
WORKDIR /var/lib/porthole
ENV PATH=/usr/local/bin
# 8080 public HTTP, 8443 public HTTPS, 8081 tunnel listener, 8082 admin.
EXPOSE 8080 8443 8081 8082
VOLUME ["/var/lib/porthole"]
ENTRYPOINT ["porthole"]
CMD ["server", "--data-dir", "/var/lib/porthole", "--log-format", "json"]
