/* tests/sim-stats.h: one count from vsockmux-sim's --stats file (sim/stats.c: "name value" lines), as the tests that run the simulator read it; owns nothing. */
#pragma once

#include <stdio.h>
#include <string.h>

/* The last value of name in path; 0 before the simulator wrote one. */
static inline unsigned long long sim_stats_get(const char *path, const char *name)
{
        FILE *fp = fopen(path, "re");
        char key[64];
        unsigned long long v, found = 0;

        if (!fp)
                return 0;
        while (fscanf(fp, "%63s %llu", key, &v) == 2)
                if (strcmp(key, name) == 0)
                        found = v;
        fclose(fp);
        return found;
}
