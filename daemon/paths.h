/* daemon/paths.h: keeps client-named paths inside the directories the daemon was given; owns nothing. */
#pragma once

/* 0 when `path` names an entry directly or deeper inside `root` (a canonical directory, as
 * realpath() gives it): -EINVAL for a relative path or a "." or ".." component, -EPERM when its
 * directory resolves outside root, -ELOOP when the entry itself is a symlink, or the -errno of
 * resolving its directory. */
int paths_check_confined(const char *root, const char *path);
