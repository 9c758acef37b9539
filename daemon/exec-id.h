/* daemon/exec-id.h: exec ids, a client's name for one exec (containerd's identifier rule), and the ones the daemon makes. */
#pragma once

#include <stdbool.h>

/* containerd's identifiers.Validate: at most 76 characters, runs of [A-Za-z0-9] joined by single
 * '.', '_' or '-'. Such an id is also a safe file name (no '/', never "." or ".."). */
#define EXEC_ID_MAX 76u

bool exec_id_is_valid(const char *id);
/* 32 random hex digits. */
int exec_id_make(char ret[static EXEC_ID_MAX + 1]);
