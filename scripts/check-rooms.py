#!/usr/bin/env python3
"""Checks that daemon/ files include only their own room's headers and those of rooms below, and
that the library rooms (bridge/, ports/, relay/) log nothing: they include no util/log.h and tell
their owner through ops tables instead; a program kept there (relay-demo.c) may log.

The rooms, top to bottom, are the ones docs/architecture.md draws; daemon/meson.build links
them in the same order (an upward call fails the build there). Every daemon/ file must be listed
here: a new file says which room it belongs to. A room's *-private.h is for that room only.

Usage: check-rooms.py SOURCE_ROOT   (exit 0: clean; 1: each violation printed)
"""
import os
import re
import sys

# Rank: a room may include headers of rooms with a lower or equal rank; rooms sharing a rank
# (container and process) may not include each other's headers.
ROOMS = [
    # (room, rank, files)
    ("main", 90, ["main.c", "room-check.c", "metrics-http.c", "metrics-http.h", "upgrade-ops.c", "upgrade-ops.h",
              "runtime-limits.c", "runtime-limits.h"]),
    ("service", 80, ["service.c", "service.h", "metrics.c", "metrics.h", "event-ring.c", "event-ring.h", "migrate.c",
                     "migrate.h"]),
    ("manager", 70, ["vmm.c", "vmm.h"]),
    ("record", 65, ["record.c", "record.h"]),
    ("handover", 60, ["save.c", "restore.c", "save-restore.h"]),
    ("vm", 50, ["vm.c", "vm-state.c", "vm-fence.c", "vm-handover.c", "vm.h", "vm-private.h"]),
    ("container", 40, ["container.c", "container.h"]),
    ("process", 40, ["process.c", "process-stream.c", "process-state.c", "process-input.c", "process-log.c",
                     "console.c", "process-handover.c", "process-index.c", "process-index.h", "process.h",
                     "process-private.h"]),
    ("types", 30, ["vmm-types.h", "context.h", "guest.h", "vmm-counters.c"]),
    ("leaf", 10, ["attach.c", "attach.h", "attach-input.c", "attach-input.h", "error.c", "error.h", "exec-id.c",
                  "exec-id.h", "exit-file.c", "exit-file.h", "log-k8s.c", "log-k8s.h", "log-journald.c", "log-journald.h", "endpoint.c", "endpoint.h",
                  "opener.c", "opener.h", "paths.c", "paths.h", "savestate.c", "savestate.h", "journal.c", "journal.h", "notify.c", "notify.h",
                  "fence.c", "fence.h", "upgrade.c", "upgrade.h", "handover-wire.c", "handover-wire.h",
                  "metrics-addr.c", "metrics-addr.h", "vmhelper.c", "vmhelper.h", "conf-file.c", "conf-file.h",
                  "bridge-log.c", "bridge-log.h", "relay-log.c", "relay-log.h"]),
]

INCLUDE = re.compile(r'^\s*#\s*include\s+"daemon/([^"]+)"', re.M)
LOG_INCLUDE = re.compile(r'^\s*#\s*include\s+"util/log\.h"', re.M)
QUIET_ROOMS = ["bridge", "ports", "relay"]
PROGRAMS = {"relay/relay-demo.c"}


def loud_library_files(root):
    """Library-room files that include util/log.h (a room missing from root is skipped)."""
    bad = []
    for room in QUIET_ROOMS:
        d = os.path.join(root, room)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            rel = f"{room}/{f}"
            if not f.endswith((".c", ".h")) or rel in PROGRAMS:
                continue
            with open(os.path.join(d, f), encoding="utf-8") as fh:
                if LOG_INCLUDE.search(fh.read()):
                    bad.append(f"{rel}: includes util/log.h: a library room logs nothing (tell the owner)")
    return bad


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    daemon = os.path.join(root, "daemon")
    room_of = {}
    for room, rank, files in ROOMS:
        for f in files:
            room_of[f] = (room, rank)
    bad = []
    for f in sorted(os.listdir(daemon)):
        if not f.endswith((".c", ".h")):
            continue
        if f not in room_of:
            bad.append(f"daemon/{f}: in no room: add it to scripts/check-rooms.py (and daemon/meson.build)")
            continue
        room, rank = room_of[f]
        with open(os.path.join(daemon, f), encoding="utf-8") as fh:
            text = fh.read()
        for inc in INCLUDE.findall(text):
            if inc not in room_of:
                bad.append(f"daemon/{f}: includes daemon/{inc}, which is in no room")
                continue
            iroom, irank = room_of[inc]
            if iroom == room:
                continue
            if inc.endswith("-private.h"):
                bad.append(f"daemon/{f} ({room}): includes daemon/{inc}, private to the {iroom} room")
            elif irank > rank or (irank == rank and iroom != room):
                bad.append(f"daemon/{f} ({room}): includes daemon/{inc} of the {iroom} room, not below it")
    bad += loud_library_files(root)
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
