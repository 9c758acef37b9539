#!/usr/bin/env bash
# tests/vm/with-libvirtd.sh SUBREAPER COMMAND [ARG...]
#
# Starts two session-mode libvirtd daemons ("src" and "dst") that can live-migrate a QEMU TCG
# guest between them, builds the multiboot test guest, runs COMMAND with
#   VM_TEST_SRC_URI, VM_TEST_DST_URI  qemu+unix:///session?socket=... for each daemon
#   VM_TEST_KERNEL                     the guest kernel (ELF, multiboot)
#   VM_TEST_DIR                        a scratch dir both daemons' QEMUs can write (unix sockets)
# and tears everything down on any exit: no daemon or QEMU survives, even when COMMAND crashes.
# Exits 77 (skip) only when libvirtd, QEMU or the assembler are missing, or when
# VSOCKMUX_LIBVIRT_TESTS=auto and the daemons cannot start here.
set -u

subreaper=$1
shift

skip() { echo "SKIP: $*" >&2; exit 77; }

for b in libvirtd virsh qemu-system-x86_64 as ld; do
        command -v "$b" >/dev/null 2>&1 || skip "$b not installed (scripts/setup.sh installs it)"
done
[ -x "$subreaper" ] || { echo "with-libvirtd: no subreaper at $subreaper" >&2; exit 1; }

dir=$(mktemp -d /tmp/vsockmux-vm.XXXXXX) || exit 1
chmod 0755 "$dir"
pids=()

teardown() {
        local rc=$?
        trap - EXIT INT TERM
        # Domains first, so QEMU exits cleanly; the subreapers SIGKILL anything still left.
        for side in src dst; do
                local s="$dir/$side/sock/libvirt-sock"
                [ -S "$s" ] || continue
                for d in $(timeout 10 virsh -q -c "qemu+unix:///session?socket=$s" list --name 2>/dev/null); do
                        timeout 10 virsh -q -c "qemu+unix:///session?socket=$s" destroy "$d" >/dev/null 2>&1
                done
        done
        for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
        for p in "${pids[@]}"; do
                for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$p" 2>/dev/null
                wait "$p" 2>/dev/null
        done
        # libvirtd never kills guests on exit: kill any QEMU whose pid file is still there.
        for f in "$dir"/*/run/libvirt/qemu/run/*.pid; do
                [ -f "$f" ] || continue
                local qp
                qp=$(cat "$f" 2>/dev/null)
                [ -n "$qp" ] && grep -q qemu "/proc/$qp/comm" 2>/dev/null && kill -KILL "$qp" 2>/dev/null
        done
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
                for side in src dst; do
                        echo "---- $side libvirtd.log (tail)" >&2
                        tail -n 15 "$dir/$side/libvirtd.log" 2>/dev/null >&2
                done
        fi
        rm -rf "$dir"
        exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# The daemons run as nobody when we are root (QEMU in session mode refuses nothing as root, but a
# root session daemon would behave like no user's); the sockets stay reachable for root.
run_as=()
owner=$(id -u):$(id -g)
if [ "$(id -u)" -eq 0 ]; then
        run_as=(setpriv --reuid=65534 --regid=65534 --clear-groups)
        owner=65534:65534
fi

# Ports 49152+ are the dynamic range; a random base keeps parallel runs apart.
base=$((50000 + (RANDOM % 150) * 100))

start_daemon() {
        local side=$1 uuid=$2 pmin=$3 d="$dir/$1"
        mkdir -p "$d"/{config/libvirt,run,cache,data,home,sock}
        cat >"$d/config/libvirt/libvirtd.conf" <<EOF
unix_sock_dir = "$d/sock"
unix_sock_rw_perms = "0777"
unix_sock_ro_perms = "0777"
unix_sock_admin_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$uuid"
log_outputs = "3:file:$d/libvirtd.log"
EOF
        cat >"$d/config/libvirt/qemu.conf" <<EOF
stdio_handler = "file"
security_driver = "none"
migration_port_min = $pmin
migration_port_max = $((pmin + 40))
EOF
        chown -R "$owner" "$d"
        chmod -R u+rwX,go+rX "$d"
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                HOME="$d/home" XDG_CONFIG_HOME="$d/config" XDG_RUNTIME_DIR="$d/run" \
                XDG_CACHE_HOME="$d/cache" XDG_DATA_HOME="$d/data" \
                "$subreaper" "${run_as[@]}" libvirtd >"$d/stdout.log" 2>&1 &
        pids+=($!)
}

start_daemon src 3b1f0c1e-5d2a-4c3e-9a51-000000000001 "$base"
start_daemon dst 3b1f0c1e-5d2a-4c3e-9a51-000000000002 $((base + 50))

for side in src dst; do
        uri="qemu+unix:///session?socket=$dir/$side/sock/libvirt-sock"
        ok=0
        for _ in $(seq 300); do
                if [ -S "$dir/$side/sock/libvirt-sock" ] && timeout 10 virsh -q -c "$uri" version >/dev/null 2>&1; then
                        ok=1
                        break
                fi
                sleep 0.1
        done
        if [ "$ok" -ne 1 ]; then
                echo "with-libvirtd: $side libvirtd did not come up:" >&2
                cat "$dir/$side/stdout.log" >&2
                tail -n 20 "$dir/$side/libvirtd.log" >&2 2>/dev/null
                [ "${VSOCKMUX_LIBVIRT_TESTS:-auto}" = auto ] && skip "libvirtd cannot run here (see above)"
                exit 1
        fi
done

# The guest: a few dozen lines of assembly, booted by QEMU's multiboot loader.
src_dir=$(dirname "$0")
as --32 -o "$dir/guest.o" "$src_dir/guest.S" &&
        ld -m elf_i386 -n --no-warn-rwx-segments -Ttext=0x100000 -o "$dir/guest.elf" "$dir/guest.o" || exit 1
chmod 0644 "$dir/guest.elf"
mkdir -p "$dir/scratch"
chown "$owner" "$dir/scratch"
chmod 0777 "$dir/scratch"

export VM_TEST_SRC_URI="qemu+unix:///session?socket=$dir/src/sock/libvirt-sock"
export VM_TEST_DST_URI="qemu+unix:///session?socket=$dir/dst/sock/libvirt-sock"
export VM_TEST_KERNEL="$dir/guest.elf"
export VM_TEST_DIR="$dir/scratch"
"$@"
