# kiln's Makefile: `make run` and `make test` are the two commands a newcomer needs; both
# install what they are missing first (`make deps`).

SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
TOOLS      := $(BIN)/tools
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/kiln-cluster/kiln/node/version.Version=$(VERSION)
OUT        ?= $(CURDIR)/out
SPEC       ?= configs/examples/demo.yaml

# Debian packages the tests need, by the command or file that shows each is there.
DEB_PKGS   := libblkid-dev:/usr/include/blkid/blkid.h \
              vagrant:vagrant vagrant-libvirt:/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json
# The QEMU boot kit of the e2e tests (internal/testboot): QEMU and iPXE's ROMs, a static busybox for
# the test initramfs, xorriso and isolinux to master test ISOs.
DEB_PKGS   += qemu-system-x86:qemu-system-x86_64 ipxe-qemu:/usr/lib/ipxe/qemu/efi-virtio.rom \
              busybox-static:/usr/share/doc/busybox-static xorriso:xorriso \
              isolinux:/usr/lib/ISOLINUX/isolinux.bin syslinux-common:/usr/lib/syslinux/modules/bios/ldlinux.c32
# GRUB's network boot image for the PXE server's GRUB boot test (bootstrap/pxe).
DEB_PKGS   += grub-common:grub-mkimage grub-pc-bin:/usr/lib/grub/i386-pc/pxe.mod
# The systemd node image of the tests (internal/systemdtest): the docker CLI and debootstrap.
DEB_PKGS   += docker.io:docker debootstrap:debootstrap
# The libvirt driver of kiln up (bootstrap/up/libvirt): a C compiler for cgo (libvirt itself is
# loaded at run time, the libvirt_dlopen tag: no headers needed), the daemon with its QEMU driver,
# qemu-img for the copy-on-write volumes and dnsmasq for the networks kiln defines.
DEB_PKGS   += gcc:gcc libc6-dev:/usr/include/stdio.h libvirt0:/usr/share/doc/libvirt0 \
              libvirt-daemon-system:libvirtd libvirt-daemon-driver-qemu:/usr/share/doc/libvirt-daemon-driver-qemu \
              qemu-utils:qemu-img dnsmasq-base:dnsmasq

# kiln is built with cgo and the libvirt_dlopen tag (the libvirt driver); every go command here
# gets the tag, so that vet and the tests see the driver too (kiln-node sets its own tags and must
# not import it). Without a C compiler, kiln is built with the driver's stub, which says so.
KILN_TAGS  := libvirt_dlopen
export GOFLAGS += -tags=$(KILN_TAGS)
CC         ?= gcc
KILN_CGO   := $(shell command -v $(CC) >/dev/null 2>&1 && echo 1 || echo 0)

export KILN_ETCD_BIN     := $(TOOLS)/etcd
export KILN_IGNITION_BIN := $(TOOLS)/ignition
export KILN_BIN          := $(BIN)/kiln
export KILN_NODE_BIN     := $(BIN)/kiln-node
# Debian's kernel for the QEMU boots (internal/testboot), unpacked by `make test-kernel`.
KERNEL_DIR := $(BIN)/cache/kernel
export KILN_KERNEL_DIR   := $(KERNEL_DIR)

.PHONY: all deps deb-deps tools build run test test-unit test-integration test-e2e bench fuzz clean

all: build

## deps: install missing Debian packages and build the pinned Go tools (etcd, ignition).
deps: deb-deps tools

deb-deps:
	@missing=""; for p in $(DEB_PKGS); do pkg=$${p%%:*}; path=$${p#*:}; \
	  [ -e "$$path" ] || command -v "$$path" >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

## test-kernel: Debian's current linux-image-amd64 for the QEMU boots of the e2e tests, downloaded
## with apt-get download and unpacked with dpkg-deb (never installed).
.PHONY: test-kernel
deps: test-kernel
test-kernel: $(KERNEL_DIR)/.unpacked

$(KERNEL_DIR)/.unpacked: | deb-deps
	@rm -rf $(KERNEL_DIR) && mkdir -p $(KERNEL_DIR)/deb
	@resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '$$1 == "Depends:" && $$2 ~ /^linux-image-[0-9]/ {print $$2; exit}'; }; \
	  p=$$(resolve); if [ -z "$$p" ]; then apt-get update -qq; p=$$(resolve); fi; \
	  [ -n "$$p" ] || { echo "cannot resolve linux-image-amd64 to a kernel package" >&2; exit 1; }; \
	  echo "downloading $$p into $(KERNEL_DIR)"; \
	  (cd $(KERNEL_DIR)/deb && apt-get download -qq "$$p" 2>&1 | grep -v unsandboxed; exit $${PIPESTATUS[0]}) && \
	  dpkg-deb -x $(KERNEL_DIR)/deb/$${p}_*.deb $(KERNEL_DIR) && rm -rf $(KERNEL_DIR)/deb
	@touch $@

## systemd-image: kiln's node image (kiln images build-node): a Debian bookworm systemd root by
## debootstrap (cached in bin/cache/nodeimage, once, as root) with Ignition, etcd and kiln-node;
## tagged by a hash of its recipe and binaries, built again only when they change. Its base is
## the systemd machine of the tests (internal/systemdtest).
.PHONY: systemd-image
deps: systemd-image
systemd-image: build tools | deb-deps
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
	  $(BIN)/kiln images build-node --image-cache $(BIN)/cache/nodeimage; \
	else echo "systemd-image: docker is missing or unreachable: skipping (its tests will skip)" >&2; fi

# The versions come from go.mod's tool directives, so they are the project's choice. Ignition is
# built as Flatcar builds it: no SELinux relabeling (the test roots have no policy).
tools: $(TOOLS)/etcd $(TOOLS)/ignition

$(TOOLS)/etcd: go.mod
	@mkdir -p $(TOOLS)
	$(GO) build -o $@ go.etcd.io/etcd/server/v3

$(TOOLS)/ignition: go.mod | deb-deps
	@mkdir -p $(TOOLS)
	$(GO) build -ldflags '-X github.com/coreos/ignition/v2/internal/distro.selinuxRelabel=false' -o $@ github.com/coreos/ignition/v2/internal

# The node daemon leaves out gRPC's request tracing (golang.org/x/net/trace, off unless enabled,
# with html/template behind it): every MB of the binary is a MB of each node's resident memory.
NODE_TAGS  := grpcnotrace
# It is also compiled without inlining where speed matters least to a mostly idle daemon: the
# third-party libraries (etcd's generated code, gRPC, protobuf, YAML, Prometheus, D-Bus) and the
# standard library outside the runtime, sync and crypto; kiln's own packages (the scheduler) keep
# it. BenchmarkFootprint measured the binary at 16.06 -> 14.98 MB, a kiln-node's RSS at 21.8 ->
# 20.7 MB, and its CPU time over the run at 0.27 -> 0.29 s.
NODE_GCFLAGS := all=-l runtime/...= internal/...= sync/...= crypto/...= github.com/kiln-cluster/kiln/...=

## build: the operator CLI and the static node daemon.
build:
	@mkdir -p $(BIN)
	@[ "$(KILN_CGO)" = 1 ] || echo "no C compiler ($(CC)): kiln is built without the libvirt driver (make deps installs gcc)"
	CGO_ENABLED=$(KILN_CGO) $(GO) build -trimpath -tags '$(KILN_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/kiln ./cmd/kiln
	@! $(GO) list -tags '$(NODE_TAGS)' -deps ./cmd/kiln-node | grep -q '^libvirt.org/' || { echo "kiln-node must not import libvirt" >&2; exit 1; }
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(NODE_TAGS)' $(foreach f,$(NODE_GCFLAGS),-gcflags='$(f)') -ldflags '$(LDFLAGS)' -o $(BIN)/kiln-node ./cmd/kiln-node

## run: bring the bundled example cluster up on this machine's Docker (kiln up --driver docker),
## then say what to try and how to take it down.
run: build systemd-image
	$(BIN)/kiln up -f $(SPEC)
	@echo; echo "try:   $(BIN)/kiln ctl machines; $(BIN)/kiln ctl units; curl http://10.0.0.11:8080/"; \
	  echo "down:  $(BIN)/kiln down -f $(SPEC)"

## test: unit tests (with -race), then integration, then end-to-end.
test: deps build test-unit test-integration test-e2e

# GOTESTFLAGS adds flags to every tier (CI sets -v to count the tests it ran).
test-unit:
	$(GO) vet ./...
	$(GO) test $(GOTESTFLAGS) -race -short -count=1 ./...

test-integration:
	$(GO) test $(GOTESTFLAGS) -count=1 -timeout 20m -run '^TestIntegration' ./...

test-e2e:
	$(GO) test $(GOTESTFLAGS) -count=1 -timeout 30m -run '^TestE2E' ./...

## bench: the figures the issues ask for.
BENCH_OUT := $(BIN)/bench.txt
bench: build
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench 'Render1000|TranslateEach1000' -benchmem -benchtime 3x -count=1 ./bootstrap/render | tee $(BENCH_OUT)
	@awk '/^BenchmarkRender1000/ {r=$$3} /^BenchmarkTranslateEach1000/ {t=$$3} \
	  END {printf "render of 1,000 nodes: %.0f ms; Butane one by one: %.0f ms; ratio 1/%.1f (goal: below 1/5)\n", r/1e6, t/1e6, t/r}' $(BENCH_OUT)
	$(GO) test -run '^$$' -bench 'Plan' -benchmem -count=1 ./node/schedule | tee -a $(BENCH_OUT)
	@# kiln pxe serve against matchbox v0.11.0 (built by the benchmark from the Go module): one node's
	@# Ignition under 32 connections on loopback, both in the same run.
	$(GO) test -run '^$$' -bench 'PXEIgnition|MatchboxIgnition' -benchtime 1x -count=1 -timeout 15m ./bootstrap/pxe | tee $(BIN)/bench-pxe.txt
	@cat $(BIN)/bench-pxe.txt >> $(BENCH_OUT)
	@awk '/^BenchmarkPXEIgnition/ { for (i = 3; i < NF; i++) { if ($$(i+1) == "req/s") k = $$i; if ($$(i+1) == "p99-ms") p = $$i } } \
	  /^BenchmarkMatchboxIgnition/ { for (i = 3; i < NF; i++) if ($$(i+1) == "req/s") m = $$i } \
	  END { printf "pxe: kiln serves a node config at %.0f requests/s, p99 %.2f ms (goal: p99 under 10 ms)\n", k, p; \
	    if (m > 0) printf "pxe: matchbox v0.11.0 serves it at %.0f requests/s; kiln/matchbox = %.0fx (goal: at least 20x)\n", m, k / m; \
	    else print "pxe: matchbox not measured (the benchmark log above says why)" }' $(BIN)/bench-pxe.txt
	@# the scheduler engine against a real three-member etcd: 10,000 units onto 1,000 machines (load
	@# generator keeping their leases, agents simulated in-process), then the steady state; and the
	@# reschedule latency over 20 machine deaths with the default settings (agents simulated in-process,
	@# then kiln-node processes with the exec executor).
	$(GO) test -run '^$$' -bench 'Placement10kOn1k|Reschedule' -benchtime 1x -count=1 -timeout 15m ./node/engine | tee $(BIN)/bench-engine.txt
	@cat $(BIN)/bench-engine.txt >> $(BENCH_OUT)
	@awk 'function v(u,  i) { for (i = 3; i < NF; i++) if ($$(i+1) == u) return $$i } \
	  /^BenchmarkPlacement10kOn1k/ { p = v("placements/s"); r = v("running/s"); w = v("steady-writes/s"); pr = v("steady-proposals/s"); k = v("keepalives/s") } \
	  /^BenchmarkReschedule-/ { l = v("p99-s") } /^BenchmarkRescheduleProcesses/ { lp = v("p99-s") } \
	  END { printf "engine: %.0f placements/s for 10,000 units on 1,000 machines, all running at %.0f/s (goal: at least 4,000/s)\n", p, r; \
	    printf "engine: reschedule latency p99 over 20 machine deaths: %.2f s with simulated agents, %.2f s with kiln-node processes (goal: at most 8 s)\n", l, lp; \
	    printf "engine: steady state with 1,000 machines and 10,000 units: %.1f key writes/s, %.1f raft proposals/s; %.0f lease keep-alives/s\n", w, pr, k }' $(BIN)/bench-engine.txt
	@# the planner's cost per unit at three sizes of the same cluster shape (ten units per machine)
	$(GO) test -run '^$$' -bench 'BenchmarkPlace$$' -benchmem -benchtime 3x -count=1 ./node/schedule | tee $(BIN)/bench-place.txt
	@cat $(BIN)/bench-place.txt >> $(BENCH_OUT)
	@awk 'function v(u,  i) { for (i = 3; i < NF; i++) if ($$(i+1) == u) return $$i } \
	  /^BenchmarkPlace\/machines=1000\// { a = v("ns/unit") } /^BenchmarkPlace\/machines=10000\// { c = v("ns/unit") } \
	  END { printf "schedule: %.1f µs per unit with 10,000 units on 1,000 machines, %.1f µs with 100,000 on 10,000: x%.2f (goal: flat)\n", a/1000, c/1000, c/a }' $(BIN)/bench-place.txt
	@# the engine's cost of ONE change (a unit added, a machine dying) at 10,000 and 100,000 units:
	@# planned incrementally as the engine does (goal: flat), and in full as it did before
	$(GO) test -run '^$$' -bench 'BenchmarkChange/.*/.*/incremental' -benchmem -benchtime 2000x -count=1 ./node/engine | tee $(BIN)/bench-change.txt
	$(GO) test -run '^$$' -bench 'BenchmarkChange/.*/.*/full' -benchmem -benchtime 3x -count=1 ./node/engine | tee -a $(BIN)/bench-change.txt
	@cat $(BIN)/bench-change.txt >> $(BENCH_OUT)
	@awk 'function v(u,  i) { for (i = 3; i < NF; i++) if ($$(i+1) == u) return $$i } \
	  /^BenchmarkChange\/units=10000\/unit-added\/incremental/ { a = v("ns/op") } /^BenchmarkChange\/units=100000\/unit-added\/incremental/ { b = v("ns/op") } \
	  /^BenchmarkChange\/units=10000\/machine-dies\/incremental/ { c = v("ns/op") } /^BenchmarkChange\/units=100000\/machine-dies\/incremental/ { d = v("ns/op") } \
	  /^BenchmarkChange\/units=100000\/unit-added\/full/ { e = v("ns/op") } /^BenchmarkChange\/units=100000\/machine-dies\/full/ { f = v("ns/op") } \
	  END { printf "engine: one unit added costs %.0f µs to plan at 10,000 units, %.0f µs at 100,000: x%.2f (goal: flat; a full plan: %.0f ms)\n", a/1000, b/1000, b/a, e/1e6; \
	    printf "engine: one machine dying costs %.0f µs to plan at 10,000 units, %.0f µs at 100,000: x%.2f (goal: flat; a full plan: %.0f ms)\n", c/1000, d/1000, d/c, f/1e6 }' $(BIN)/bench-change.txt
	@# 100,000 units onto 10,000 simulated machines against a real etcd (minutes of both cores),
	@# then the steady state and an engine takeover; and the memory of three kiln-node processes
	@# running 100 units with the exec executor, beside the floor (etcd client, lease, watch)
	$(GO) test -run '^$$' -bench 'Placement100kOn10k|Footprint' -benchtime 1x -count=1 -timeout 60m ./node/engine | tee $(BIN)/bench-scale.txt
	@cat $(BIN)/bench-scale.txt >> $(BENCH_OUT)
	@awk 'function v(u,  i) { for (i = 3; i < NF; i++) if ($$(i+1) == u) return $$i } \
	  /^BenchmarkPlacement100kOn10k/ { p = v("placements/s"); r = v("running/s"); h = v("engine-heap-MB"); d = v("etcd-db-MB"); t = v("takeover-s"); w = v("steady-writes/s"); k = v("keepalives/s") } \
	  /^BenchmarkFootprint/ { m = v("rss-max-MB"); a = v("rss-MB"); f = v("floor-MB"); c = v("cpu-s") } \
	  END { printf "engine: 100,000 units on 10,000 machines: %.0f placements/s, all running at %.0f/s; engine heap %.0f MB; etcd database %.0f MB\n", p, r, h, d; \
	    printf "engine: 100,000 units on 10,000 machines: a new leader caught up %.1f s after the engine died; steady state %.1f key writes/s, %.0f lease keep-alives/s\n", t, w, k; \
	    printf "kiln-node: %.1f MB RSS (largest of three; mean %.1f MB) running 100 units; floor %.1f MB (goal: at most 20 MB); %.2f s of CPU each over the run\n", m, a, f, c }' $(BIN)/bench-scale.txt

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./bootstrap/spec
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./node/unit
	$(GO) test -run '^$$' -fuzz FuzzAssetPath -fuzztime 60s ./bootstrap/pxe

clean:
	rm -rf $(BIN) $(OUT)
