/* sim/stats.c: --stats PATH, the counts of what the simulator answered and what it dropped, rewritten
 * at each change (temp file and rename) so a test can show which branch the host took. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim/sim.h"
#include "util/log.h"

static const char *const stat_names[_SIM_STAT_MAX] = {
        [SIM_STAT_WAIT_EXITED_SENT] = "wait_exited_sent",
        [SIM_STAT_WAIT_NOT_FOUND_SENT] = "wait_not_found_sent",
        [SIM_STAT_WAIT_TIMEOUT_SENT] = "wait_timeout_sent",
        [SIM_STAT_WAIT_BEFORE_EOF] = "wait_answered_before_stdout_eof",
        [SIM_STAT_REPLY_LOST] = "replies_lost",
        [SIM_STAT_REPLY_HELD] = "replies_held_for_next_connection",
        [SIM_STAT_BRIDGE_CONNECTS] = "bridge_connects",
        [SIM_STAT_STDIO_REDIALS] = "stdio_redials",
        [SIM_STAT_WAIT_RECEIVED] = "waits_received",
        [SIM_STAT_BRIDGE_LOSSES] = "bridge_losses",
        [SIM_STAT_BRIDGE_PANICS] = "bridge_panics",
};

/* Called with stats_lock held. A test reads whole files only: never a half-written one. */
static void stats_publish_locked(struct sim *s)
{
        char tmp[4096 + 8];
        FILE *f;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", s->opt.stats_path) >= (int)sizeof(tmp))
                return;
        f = fopen(tmp, "we");
        if (!f) {
                log_warn("stats: cannot write %s: %s", tmp, strerror(errno));
                return;
        }
        for (int k = 0; k < _SIM_STAT_MAX; k++)
                fprintf(f, "%s %llu\n", stat_names[k], (unsigned long long)s->stats[k]);
        if (fclose(f) != 0 || rename(tmp, s->opt.stats_path) < 0) {
                log_warn("stats: cannot write %s: %s", s->opt.stats_path, strerror(errno));
                unlink(tmp);
        }
}

void sim_stat_add(struct sim *s, enum sim_stat k)
{
        if (k < 0 || k >= _SIM_STAT_MAX)
                return;
        pthread_mutex_lock(&s->stats_lock);
        s->stats[k]++;
        if (s->opt.stats_path)
                stats_publish_locked(s);
        pthread_mutex_unlock(&s->stats_lock);
}

void sim_stats_init(struct sim *s)
{
        pthread_mutex_init(&s->stats_lock, NULL);
        if (s->opt.stats_path) {
                pthread_mutex_lock(&s->stats_lock);
                stats_publish_locked(s);
                pthread_mutex_unlock(&s->stats_lock);
        }
}

void sim_stats_done(struct sim *s)
{
        pthread_mutex_destroy(&s->stats_lock);
}
