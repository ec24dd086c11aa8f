# syntax=docker/dockerfile:1
# IPP image: a static ipp binary on distroless, non-root. Build with `make image`
# (docker build -t $(IMAGE) .).

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so that source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN go mod download
# .dockerignore keeps e2e/ (its own module), bin/ and the docs out.
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o /out/ipp ./cmd/ipp

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/ipp /ipp
# 65532 is distroless's nonroot user; the Deployment's securityContext requires a non-root UID.
USER 65532:65532
ENTRYPOINT ["/ipp"]
