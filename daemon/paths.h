/* daemon/paths.h: keeps client-named paths inside the directories the daemon was given; owns nothing. */
#pragma once

#include <stddef.h>

/* 0 when `path` names an entry directly or deeper inside `root` (a canonical directory, as
 * realpath() gives it): -EINVAL for a relative path or a "." or ".." component, -EPERM when its
 * directory resolves outside root, -ELOOP when the entry itself is a symlink, or the -errno of
 * resolving its directory. */
int paths_check_confined(const char *root, const char *path);

/* Opens the directory of `path` once (O_PATH, O_DIRECTORY, O_NOFOLLOW) and, with root non-NULL,
 * checks both by path and by where the opened directory really is that it lies inside root.
 * Writes to via "/proc/self/fd/<fd>/<name>": a name for the entry that resolves through the
 * held directory, so every later bind, unlink and connect lands there even when a directory on
 * the way is swapped for a symlink. -ENAMETOOLONG when via does not fit. */
int paths_open_dir(const char *root, const char *path, int *ret_dirfd, char *via, size_t vialen);
