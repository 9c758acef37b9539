/* daemon/exit-file.h: conmon's exit files: DIR/<exec-id> holding the decimal exit status, written atomically. */
#pragma once

/* Writes `status` in decimal to a temp file in dirfd, then renames it to `name`, so a watcher
 * (inotify IN_MOVED_TO) sees the whole file or none. The temp name starts with '.', which no exec
 * id does. 0 or -errno (the temp file is removed on failure). */
int exit_file_write(int dirfd, const char *name, int status);
