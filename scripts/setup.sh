#!/usr/bin/env bash
# Installs the Debian 12 packages that vsockmux's build, tests, demo and benchmarks need.
# Idempotent: apt-get runs only for packages that are missing.
set -euo pipefail

packages=(
  # build
  gcc clang meson ninja-build pkg-config
  liburing-dev libprotobuf-c-dev protobuf-c-compiler libjson-c-dev libvirt-dev libcmocka-dev
  libsystemd-dev libmicrohttpd-dev
  # tests: the Prometheus text parser the metrics test reads the daemon's output with
  python3 python3-prometheus-client
  # fuzzing with clang (libFuzzer runtime)
  libclang-rt-14-dev
  # tests: second uid via setpriv, real libvirtd + TCG guests, the guest kernel's assembler
  util-linux libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 binutils
  # the Go client example (examples/go): Go, containerd/ttrpc 1.1.1, protoc-gen-go (1.3) and protoc
  golang-go golang-github-containerd-ttrpc-dev golang-goprotobuf-dev protobuf-compiler
  # memory checks and benchmarks
  valgrind socat gnuplot-nox procps
  # tests: fault injection standing in for a kernel without io_uring
  strace
  # tests: the C style check (scripts/check-format.sh)
  clang-format
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
echo "setup: installing ${missing[*]}" >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/vsockmux-apt.log 2>&1 || { tail -n 30 /tmp/vsockmux-apt.log >&2; exit 1; }
