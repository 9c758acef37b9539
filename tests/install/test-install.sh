#!/bin/sh
# tests/install/test-install.sh BUILD_ROOT SOURCE_ROOT MESON CC SANITIZE: `meson install` into a
# scratch destdir; the tree it puts down is exactly the list below (a new installed file must be
# added here, so nothing lands in a prefix untested); a program built against the installed
# vsockmux.pc and nothing else talks to the installed vsockmuxd and vsockmux-sim; the installed
# CLI runs on the installed libvsockmux.so.0.
set -eu

build=$1 src=$2 meson=$3 cc=$4 sanitize=$5

command -v pkg-config >/dev/null || { echo "SKIP: pkg-config is not installed"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vsockmux-install.XXXXXX")
daemon_pid=
cleanup() {
        [ -z "$daemon_pid" ] || { kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; }
        [ -n "${VSOCKMUX_INSTALL_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$meson" install -C "$build" --no-rebuild --quiet --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
        { cat "$tmp/install.log" >&2; fail "meson install"; }

eval "$(python3 -c '
import json, subprocess, sys
opts = {o["name"]: o["value"] for o in json.loads(subprocess.check_output([sys.argv[1], "introspect", sys.argv[2], "--buildoptions"]))}
print("prefix=%s libdir=%s includedir=%s bindir=%s libexecdir=%s unitdir=%s" % (opts["prefix"], opts["libdir"], opts["includedir"], opts["bindir"], opts["libexecdir"], opts["systemdunitdir"] or opts["prefix"] + "/lib/systemd/system"))
' "$meson" "$build")"
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
case $includedir in /*) ;; *) includedir=$prefix/$includedir ;; esac
case $bindir in /*) ;; *) bindir=$prefix/$bindir ;; esac
case $libexecdir in /*) ;; *) libexecdir=$prefix/$libexecdir ;; esac
root=$tmp/root
version=$("$meson" introspect "$build" --projectinfo | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')

# Everything installed, and nothing else.
cat >"$tmp/expected" <<LIST
$bindir/vsockmux
$bindir/vsockmux-sim
$bindir/vsockmuxd
$includedir/vsockmux/control.pb-c.h
$includedir/vsockmux/vsockmux.h
$libdir/libvsockmux.so
$libdir/libvsockmux.so.0
$libdir/libvsockmux.so.$version
$libdir/pkgconfig/vsockmux.pc
$libexecdir/vsockmux-vmhelper
$unitdir/vsockmuxd.service
$unitdir/vsockmuxd.socket
LIST
(cd "$root" && find . ! -type d | sed 's|^\.||' | LC_ALL=C sort) >"$tmp/actual"
LC_ALL=C sort -o "$tmp/expected" "$tmp/expected"
diff -u "$tmp/expected" "$tmp/actual" >&2 || fail "the installed tree is not the expected one (- missing, + unexpected)"
[ "$(readlink "$root$libdir/libvsockmux.so.0")" = "libvsockmux.so.$version" ] || fail "libvsockmux.so.0 does not point at the library"
readelf -d "$root$libdir/libvsockmux.so.$version" | grep -q 'SONAME.*\[libvsockmux\.so\.0\]' || fail "no soname libvsockmux.so.0"

grep -qx "ExecStart=$bindir/vsockmuxd .*" "$root$unitdir/vsockmuxd.service" || fail "vsockmuxd.service does not start $bindir/vsockmuxd"
grep -qx "FileDescriptorName=control" "$root$unitdir/vsockmuxd.socket" || fail "vsockmuxd.socket does not name its socket control"

# The .pc names the real prefix; the scratch copy is found by redefining it.
export PKG_CONFIG_PATH="$root$libdir/pkgconfig"
pc() { pkg-config --define-variable=prefix="$root$prefix" "$@" vsockmux; }
[ "$(pc --modversion)" = "$version" ] || fail "vsockmux.pc's version is not $version"
san=
[ "$sanitize" = none ] || san="-fsanitize=$sanitize"
# shellcheck disable=SC2046  # pkg-config's words are separate arguments
"$cc" -std=c11 -Wall -Wextra -Werror $san -o "$tmp/install-client" "$src/tests/install/install-client.c" \
        $(pc --cflags --libs) || fail "building a program against the installed vsockmux.pc"

export LD_LIBRARY_PATH="$root$libdir"
for prog in "$tmp/install-client" "$root$bindir/vsockmux"; do
        ldd "$prog" | grep -q "libvsockmux\.so\.0 => $root$libdir/libvsockmux\.so\.0" ||
                fail "$prog does not load the installed libvsockmux.so.0: $(ldd "$prog")"
done

"$root$bindir/vsockmuxd" --socket "$tmp/d.sock" --state-dir "$tmp/state" --hvsock-root "$tmp" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
# Waiting for the socket is not a timing assertion: a daemon that never listens fails below.
i=0
while [ ! -S "$tmp/d.sock" ] && [ $i -lt 1200 ] && kill -0 "$daemon_pid" 2>/dev/null; do
        sleep 0.05; i=$((i + 1))
done
[ -S "$tmp/d.sock" ] || { cat "$tmp/daemon.log" >&2; fail "the installed vsockmuxd never listened"; }

"$tmp/install-client" "$tmp/d.sock" "$tmp/vm.vsock" "$tmp/out.log" "$root$bindir/vsockmux-sim" ||
        { cat "$tmp/daemon.log" >&2; fail "install-client"; }
[ "$(cat "$tmp/out.log")" = installed ] || fail "the process's stdout is '$(cat "$tmp/out.log")', not 'installed'"

"$root$bindir/vsockmux" --socket "$tmp/d.sock" vm ls --json >"$tmp/ls.json" || fail "the installed CLI's vm ls"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if isinstance(d, (list, dict)) else 1)' "$tmp/ls.json" ||
        fail "the installed CLI's vm ls --json is not JSON"
"$root$bindir/vsockmux" exec --help | grep -q '^Usage: vsockmux exec ' || fail "the installed CLI's exec --help"

kill "$daemon_pid"
wait "$daemon_pid" || fail "vsockmuxd exited $? on SIGTERM: $(cat "$tmp/daemon.log")"
daemon_pid=
echo "ok: installed tree, vsockmux.pc, a client built on it, the installed daemon, simulator and CLI"
