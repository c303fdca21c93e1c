# spiagent: the two commands that matter are `make demo` (the seed scenario
# in a namespace lab; needs root) and `make test` (every test; needs root for
# the namespace, strongSwan and qemu tests, which is how CI runs it).

GO        ?= go
GOFLAGS   ?=
# make demo DATAPLANE=xfrm: the kernel's XFRM (in a qemu guest when this
# kernel has no ESP); auto lets the agents pick; userspace forces Go's ESP.
DATAPLANE ?= auto
export GOFLAGS

.PHONY: all build gen check-gen deps vet test unit race bench demo clean tools

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# Regenerate gen/ from yang/ with the ygot version pinned in go.mod.
gen:
	$(GO) generate ./gen

# Fails when gen/ is not what the YANG and the pinned generator produce.
check-gen: gen
	@if ! git diff --quiet -- gen/ || [ -n "$$(git status --porcelain -- gen/)" ]; then \
		echo "gen/ is stale: run 'make gen' and commit the result" >&2; \
		git status --short -- gen/ >&2; exit 1; fi

# Debian packages the tests and the lab use (yanglint, strongSwan, qemu, ...).
deps:
	./scripts/deps.sh

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
		if [ -n "$$out" ]; then echo "not gofmt-clean:" >&2; echo "$$out" >&2; exit 1; fi
	$(GO) vet ./...

# Third-party clients the tests drive (openconfig's gnmi_cli).
tools:
	GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/openconfig/gnmi/cmd/gnmi_cli@v0.14.1

unit: tools
	$(GO) test -count=1 -timeout 20m ./...

race:
	$(GO) test -count=1 -race -timeout 10m ./ytree/... ./store/... ./agent/validators/... ./agent/telemetry/... ./agent/recovery/...

# The test command (README, .ci/run): everything, as root.
test: deps check-gen vet unit race

# The main job: the seed scenario in a namespace lab, narrated (root).
# DATAPLANE=xfrm on a kernel without ESP runs it in a qemu guest.
demo: build
	@for f in examples/seed/*.json examples/lab/*.json; do ./bin/spiagent validate "$$f" || exit 1; done
	$(GO) run ./lab/demo -repo . -bin bin -dataplane $(DATAPLANE)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
