/* daemon/migrate.c: the Migrate method. The daemon keeps what is its own (the relay state: save
 * at the switchover, resume on a rollback, remove once the VM lives on the destination) and
 * hands everything that blocks or needs libvirt to a vsockmux-vmhelper child, which also talks
 * to the destination daemon. A helper that dies is followed by a rollback helper, so a crash
 * there ends the migration with the domain and the relay state back on the source. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/migrate.h"
#include "daemon/vmhelper.h"
#include "util/list.h"
#include "util/log.h"

#define MIGRATE_WHY_MAX 1024u

/* Who drives the migration; every transition is in migration_set_phase's callers below. */
enum migration_phase {
        MIGRATION_RUNNING,      /* the migrate helper drives libvirt */
        MIGRATION_ROLLING_BACK, /* it died without an outcome; a rollback helper undoes */
        MIGRATION_FINISHED,     /* the call is answered; the helper is on its way out */
        _MIGRATION_PHASE_MAX,
};

/* Where the VM's relay state is. */
enum migration_relay {
        MIGRATION_RELAY_HERE,   /* live on this daemon */
        MIGRATION_RELAY_SAVING, /* vmm_save in flight */
        MIGRATION_RELAY_SAVED,  /* saved here: a rollback resumes it */
        _MIGRATION_RELAY_MAX,
};

struct migrations {
        struct relay *relay;
        struct vmm *vmm;
        char *helper_path;
        uid_t owner_uid;
        const struct migrations_ops *ops;
        void *userdata;
        struct list_head list;
};

struct migration {
        struct list_head link;
        struct migrations *ms; /* NULL: detached at daemon stop, freed by on_saved */
        char *vm, *source_uri, *domain, *dest_socket, *dest_name;
        struct control_call *call; /* NULL once answered or the caller is gone */
        struct vmhelper *helper;
        enum migration_phase phase;
        enum migration_relay relay;
        unsigned processes;
        char helper_died[VMHELPER_WHY_MAX];
        bool rollback_known; /* the rollback helper's outcome, waiting for a save */
        Vsockmux__Vmhelper__Outcome rb;
        char rb_message[VMHELPER_MESSAGE_MAX + 1];
};

static const struct vmhelper_ops migration_helper_ops;

static struct migration *migration_free(struct migration *m)
{
        if (!m)
                return NULL;
        list_del(&m->link);
        m->helper = vmhelper_free(m->helper);
        free(m->vm);
        free(m->source_uri);
        free(m->domain);
        free(m->dest_socket);
        free(m->dest_name);
        free(m);
        return NULL;
}

/* Once answered, with no helper left and no save in flight, nothing refers to it any more. */
static void migration_maybe_free(struct migration *m)
{
        if (m->phase == MIGRATION_FINISHED && !m->helper && m->relay != MIGRATION_RELAY_SAVING)
                migration_free(m);
}

/* The unanswered migration of vm, if any. */
static struct migration *migration_find(struct migrations *ms, const char *vm)
{
        struct list_head *pos;

        list_for_each(pos, &ms->list) {
                struct migration *m = list_entry(pos, struct migration, link);

                /* An answered one only waits for its helper to exit: a new one may start. */
                if (m->phase != MIGRATION_FINISHED && strcmp(m->vm, vm) == 0)
                        return m;
        }
        return NULL;
}

/* ---- Events ---- */

static void migration_publish(struct migration *m, Vsockmux__V1__EventKind kind, Vsockmux__V1__MigrationProgress *mp,
                              const char *message)
{
        Vsockmux__V1__Event ev = VSOCKMUX__V1__EVENT__INIT;

        if (!m->ms)
                return;
        ev.kind = kind;
        ev.vm = m->vm;
        ev.message = (char *)message;
        ev.migration = mp;
        m->ms->ops->publish(&ev, m->ms->userdata);
}

static void progress_from_stats(const Vsockmux__Vmhelper__Stats *s, Vsockmux__V1__MigrationProgress *ret)
{
        if (!s)
                return;
        ret->elapsed_ms = s->elapsed_ms;
        ret->data_processed = s->data_processed;
        ret->data_remaining = s->data_remaining;
        ret->data_total = s->data_total;
        ret->iteration = s->iteration;
        ret->bytes_per_s = s->bytes_per_s;
        ret->dirty_pages_per_s = s->dirty_pages_per_s;
        ret->throttle_percent = s->throttle_percent;
}

static void migration_publish_phase(struct migration *m, const char *phase, const char *message)
{
        Vsockmux__V1__MigrationProgress mp = VSOCKMUX__V1__MIGRATION_PROGRESS__INIT;

        mp.phase = (char *)phase;
        migration_publish(m, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_PROGRESS, &mp, message);
}

/* ---- the end ---- */

/* The domain runs on the source again: the relay state follows it (a save is resumed). */
static int migration_resume_here(struct migration *m, char *why, size_t len)
{
        struct vmm_vm *vm = vmm_vm_find(m->ms->vmm, m->vm);
        struct vmm_error err = {};

        if (m->relay != MIGRATION_RELAY_SAVED)
                return 0;
        if (!vm || vmm_resume(vm, &err) < 0) {
                snprintf(why + strlen(why), len - strlen(why), "; cannot resume its relay state here (%s)",
                         vm ? err.message : "the VM was removed");
                return -EIO;
        }
        m->relay = MIGRATION_RELAY_HERE;
        return 0;
}

/* Fails the call; when the domain runs on the source, the relay state goes back to it first. */
static void migration_fail(struct migration *m, const Vsockmux__Vmhelper__Outcome *o, const char *why_in)
{
        Vsockmux__V1__MigrationProgress mp = VSOCKMUX__V1__MIGRATION_PROGRESS__INIT;
        char why[MIGRATE_WHY_MAX];
        bool rolled_back;

        snprintf(why, sizeof(why), "%s", why_in);
        rolled_back = o->domain_on_source && migration_resume_here(m, why, sizeof(why)) == 0 && o->destination_clean;
        if (o->invalid_argument)
                ; /* refused before anything happened: nothing to roll back */
        else if (rolled_back)
                snprintf(why + strlen(why), sizeof(why) - strlen(why), "; rolled back: the VM stays on the source");
        else if (!o->domain_on_source)
                snprintf(why + strlen(why), sizeof(why) - strlen(why), "; the domain is not back on the source");
        log_warn("migrate %s: %s", m->vm, why);
        if (!o->invalid_argument) {
                mp.phase = (char *)"failed";
                mp.rolled_back = rolled_back;
                migration_publish(m, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_FAILED, &mp, why);
        }
        if (m->call)
                control_call_fail(m->call,
                                  o->invalid_argument ? CONTROL_CODE_INVALID_ARGUMENT
                                  : rolled_back       ? CONTROL_CODE_ABORTED
                                                      : CONTROL_CODE_INTERNAL,
                                  "%s", why);
        m->call = NULL;
        m->phase = MIGRATION_FINISHED;
}

/* The domain runs on the destination with the relay state: this daemon keeps nothing of it. */
static void migration_succeed(struct migration *m, const Vsockmux__Vmhelper__Outcome *o)
{
        Vsockmux__V1__MigrateResponse resp = VSOCKMUX__V1__MIGRATE_RESPONSE__INIT;
        Vsockmux__V1__MigrationProgress mp = VSOCKMUX__V1__MIGRATION_PROGRESS__INIT;
        char text[256];

        if (o->stats) {
                resp.migration_ms = o->stats->elapsed_ms;
                resp.downtime_ms = o->stats->downtime_ms;
                resp.data_bytes = o->stats->data_processed;
                resp.iterations = o->stats->iteration;
                progress_from_stats(o->stats, &mp);
        }
        resp.processes = m->processes;
        resp.save_to_restore_us = o->save_to_restore_us;
        resp.save_to_resume_us = o->save_to_resume_us;
        resp.stdio_blackout_measured = o->blackout_measured;
        resp.stdio_blackout_us = o->stdio_blackout_us;
        resp.destination_vm = o->destination_vm;
        snprintf(text, sizeof(text), "completed: %llu ms, downtime %llu ms, %llu bytes, %llu iterations",
                 (unsigned long long)resp.migration_ms, (unsigned long long)resp.downtime_ms,
                 (unsigned long long)resp.data_bytes, (unsigned long long)resp.iterations);
        mp.phase = (char *)"completed";
        mp.processes = m->processes;
        mp.destination_vm = o->destination_vm;
        /* Before the VM goes: the event names it. */
        migration_publish(m, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_COMPLETED, &mp, text);
        if (vmm_vm_remove(m->ms->vmm, m->vm) == 0)
                m->relay = MIGRATION_RELAY_HERE;
        log_info("migrate %s: %s", m->vm, text);
        if (m->call)
                control_call_reply(m->call, &resp.base);
        m->call = NULL;
        m->phase = MIGRATION_FINISHED;
}

static void migration_on_outcome(struct migration *m, const Vsockmux__Vmhelper__Outcome *o)
{
        if (o->ok && m->relay == MIGRATION_RELAY_SAVED)
                migration_succeed(m, o);
        else if (o->ok) {
                Vsockmux__Vmhelper__Outcome bad = *o;

                /* Never: the helper cannot restore a state it did not get. */
                bad.domain_on_source = false;
                migration_fail(m, &bad, "the helper reported success without the relay state saved");
        } else
                migration_fail(m, o, o->message);
}

/* The rollback helper's answer, once no save is in flight. */
static void migration_finish_rollback(struct migration *m)
{
        char why[MIGRATE_WHY_MAX];

        snprintf(why, sizeof(why), "vsockmux-vmhelper %s during the migration%s%s", m->helper_died,
                 m->rb_message[0] ? "; " : "", m->rb_message);
        migration_fail(m, &m->rb, why);
}

/* ---- the switchover ---- */

static void migration_send_saved(struct migration *m, bool ok, const char *error, const uint8_t *blob, size_t len)
{
        vmhelper_msg msg = VSOCKMUX__VMHELPER__MESSAGE__INIT;
        Vsockmux__Vmhelper__Saved sv = VSOCKMUX__VMHELPER__SAVED__INIT;

        sv.ok = ok;
        sv.error = (char *)error;
        sv.state.data = (uint8_t *)blob;
        sv.state.len = len;
        sv.processes = m->processes;
        msg.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_SAVED;
        msg.saved = &sv;
        if (m->helper && vmhelper_send(m->helper, &msg) < 0)
                log_warn("migrate %s: cannot hand the saved state to the helper", m->vm);
}

static void migration_on_saved(int error, const char *message, const uint8_t *blob, size_t len, unsigned n_processes,
                               void *userdata)
{
        struct migration *m = userdata;
        Vsockmux__V1__MigrationProgress mp = VSOCKMUX__V1__MIGRATION_PROGRESS__INIT;

        if (!m->ms) {
                migration_free(m);
                return;
        }
        m->relay = error < 0 ? MIGRATION_RELAY_HERE : MIGRATION_RELAY_SAVED;
        m->processes = error < 0 ? 0 : n_processes;
        if (m->phase == MIGRATION_RUNNING)
                migration_send_saved(m, error == 0, error < 0 ? message : "", blob, len);
        if (error == 0) {
                mp.phase = (char *)"saved";
                mp.processes = n_processes;
                mp.state_bytes = len;
                migration_publish(m, VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_PROGRESS, &mp,
                                  "source paused; relay state saved");
        }
        if (m->phase == MIGRATION_ROLLING_BACK && m->rollback_known)
                migration_finish_rollback(m);
        migration_maybe_free(m);
}

static void migration_on_suspended(struct migration *m)
{
        struct vmm_vm *vm = vmm_vm_find(m->ms->vmm, m->vm);
        struct vmm_error err = {};

        migration_publish_phase(m, "suspended", "source paused");
        if (!vm) {
                migration_send_saved(m, false, "the VM was removed from the source daemon", NULL, 0);
                return;
        }
        m->relay = MIGRATION_RELAY_SAVING;
        if (vmm_save(vm, migration_on_saved, m, &err) < 0) {
                m->relay = MIGRATION_RELAY_HERE;
                migration_send_saved(m, false, err.message, NULL, 0);
        }
}

/* ---- the helpers ---- */

static void migration_on_event(struct migration *m, const Vsockmux__Vmhelper__Event *e)
{
        Vsockmux__V1__MigrationProgress mp = VSOCKMUX__V1__MIGRATION_PROGRESS__INIT;
        Vsockmux__V1__EventKind kind = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_PROGRESS;

        if (e->phase == VSOCKMUX__VMHELPER__PHASE__PHASE_SUSPENDED) {
                if (m->relay == MIGRATION_RELAY_HERE)
                        migration_on_suspended(m);
                return;
        }
        if (e->phase == VSOCKMUX__VMHELPER__PHASE__PHASE_STARTED)
                kind = VSOCKMUX__V1__EVENT_KIND__EVENT_KIND_MIGRATION_STARTED;
        mp.phase = (char *)vmhelper_phase_to_string(e->phase);
        progress_from_stats(e->stats, &mp);
        mp.destination_vm = e->destination_vm;
        migration_publish(m, kind, &mp, e->message);
}

static void migration_on_message(struct vmhelper *h, const vmhelper_msg *msg, void *userdata)
{
        struct migration *m = userdata;

        if (msg->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_EVENT && m->phase == MIGRATION_RUNNING)
                migration_on_event(m, msg->event);
        else if (msg->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_OUTCOME && m->phase == MIGRATION_RUNNING)
                migration_on_outcome(m, msg->outcome);
        else if (msg->body_case == VSOCKMUX__VMHELPER__MESSAGE__BODY_OUTCOME && m->phase == MIGRATION_ROLLING_BACK &&
                 !m->rollback_known) {
                m->rb = *msg->outcome;
                snprintf(m->rb_message, sizeof(m->rb_message), "%s", msg->outcome->message);
                m->rb.message = m->rb_message;
                m->rb.stats = NULL;
                m->rb.destination_vm = NULL;
                m->rollback_known = true;
                if (m->relay != MIGRATION_RELAY_SAVING)
                        migration_finish_rollback(m);
        } else
                log_warn("migrate %s: ignoring an unexpected message from vsockmux-vmhelper", m->vm);
}

static int migration_spawn(struct migration *m, const vmhelper_msg *first)
{
        int r = vmhelper_spawn(m->ms->relay, m->ms->helper_path, &migration_helper_ops, m, &m->helper);

        if (r < 0)
                return r;
        r = vmhelper_send(m->helper, first);
        if (r < 0)
                m->helper = vmhelper_free(m->helper);
        return r;
}

static int migration_start_rollback(struct migration *m)
{
        vmhelper_msg msg = VSOCKMUX__VMHELPER__MESSAGE__INIT;
        Vsockmux__Vmhelper__Rollback rb = VSOCKMUX__VMHELPER__ROLLBACK__INIT;

        rb.vm = m->vm;
        rb.source_uri = m->source_uri;
        rb.domain = m->domain;
        rb.destination_socket = m->dest_socket;
        rb.destination_name = m->dest_name;
        msg.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_ROLLBACK;
        msg.rollback = &rb;
        return migration_spawn(m, &msg);
}

static void migration_on_helper_exit(struct vmhelper *h, const char *why, void *userdata)
{
        struct migration *m = userdata;
        Vsockmux__Vmhelper__Outcome unknown = VSOCKMUX__VMHELPER__OUTCOME__INIT;
        char text[MIGRATE_WHY_MAX], died[VMHELPER_WHY_MAX];
        int r;

        /* why lives in h. */
        snprintf(died, sizeof(died), "%s", why);
        why = died;
        m->helper = vmhelper_free(m->helper);
        if (m->phase == MIGRATION_ROLLING_BACK && !m->rollback_known) {
                /* Nobody can say where the domain is now: leave the relay state as it is. */
                snprintf(text, sizeof(text), "vsockmux-vmhelper %s during the migration, and its rollback helper %s",
                         m->helper_died, why);
                migration_fail(m, &unknown, text);
        } else if (m->phase == MIGRATION_RUNNING) {
                snprintf(m->helper_died, sizeof(m->helper_died), "%s", why);
                log_warn("migrate %s: vsockmux-vmhelper %s without an outcome; rolling back", m->vm, why);
                migration_publish_phase(m, "helper-died", m->helper_died);
                m->phase = MIGRATION_ROLLING_BACK;
                r = migration_start_rollback(m);
                if (r < 0) {
                        snprintf(text, sizeof(text),
                                 "vsockmux-vmhelper %s during the migration; no rollback helper: %s", why,
                                 strerror(-r));
                        migration_fail(m, &unknown, text);
                }
        }
        migration_maybe_free(m);
}

static const struct vmhelper_ops migration_helper_ops = {
        .on_message = migration_on_message,
        .on_exit = migration_on_helper_exit,
};

/* ---- the call ---- */

static void migration_send_abort(struct migration *m)
{
        vmhelper_msg msg = VSOCKMUX__VMHELPER__MESSAGE__INIT;
        Vsockmux__Vmhelper__Abort a = VSOCKMUX__VMHELPER__ABORT__INIT;

        msg.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_ABORT;
        msg.abort = &a;
        if (m->helper && m->phase == MIGRATION_RUNNING)
                (void)vmhelper_send(m->helper, &msg);
}

/* A caller that went away takes its migration with it, as far as an abort still can. */
static void migration_on_cancel(struct control_call *call, void *userdata)
{
        struct migration *m = userdata;

        control_call_fail(call, CONTROL_CODE_CANCELLED, "client gone");
        m->call = NULL;
        migration_send_abort(m);
}

static int dup_or_default(const char *s, const char *dflt, char **ret)
{
        *ret = strdup(s && s[0] ? s : dflt);
        return *ret ? 0 : -ENOMEM;
}

static int migration_new(struct migrations *ms, const Vsockmux__V1__MigrateRequest *req, struct migration **ret)
{
        struct migration *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        list_init(&m->link);
        m->ms = ms;
        if (dup_or_default(req->vm, "", &m->vm) < 0 || dup_or_default(req->source_uri, "", &m->source_uri) < 0 ||
            dup_or_default(req->domain, req->vm, &m->domain) < 0 ||
            dup_or_default(req->destination_socket, "", &m->dest_socket) < 0 ||
            dup_or_default(req->destination_name, req->vm, &m->dest_name) < 0) {
                migration_free(m);
                return -ENOMEM;
        }
        *ret = m;
        return 0;
}

/* The request as the helper's Migrate: the same strings, borrowed. */
static int migration_send_start(struct migration *m, const Vsockmux__V1__MigrateRequest *req)
{
        vmhelper_msg msg = VSOCKMUX__VMHELPER__MESSAGE__INIT;
        Vsockmux__Vmhelper__Migrate q = VSOCKMUX__VMHELPER__MIGRATE__INIT;
        q.vm = m->vm;
        q.source_uri = m->source_uri;
        q.domain = m->domain;
        q.destination_uri = req->destination_uri;
        q.destination_socket = m->dest_socket;
        /* The control API's own messages: vmhelper.proto imports them. */
        q.params = req->params;
        q.n_params = req->n_params;
        q.destination_name = m->dest_name;
        if (req->destination_transport_case ==
            VSOCKMUX__V1__MIGRATE_REQUEST__DESTINATION_TRANSPORT_DESTINATION_HVSOCK_PATH) {
                q.destination_transport_case =
                        VSOCKMUX__VMHELPER__MIGRATE__DESTINATION_TRANSPORT_DESTINATION_HVSOCK_PATH;
                q.destination_hvsock_path = req->destination_hvsock_path;
        } else if (req->destination_transport_case ==
                   VSOCKMUX__V1__MIGRATE_REQUEST__DESTINATION_TRANSPORT_DESTINATION_CID) {
                q.destination_transport_case = VSOCKMUX__VMHELPER__MIGRATE__DESTINATION_TRANSPORT_DESTINATION_CID;
                q.destination_cid = req->destination_cid;
        }
        q.io = req->io;
        q.n_io = req->n_io;
        msg.body_case = VSOCKMUX__VMHELPER__MESSAGE__BODY_MIGRATE;
        msg.migrate = &q;
        return migration_spawn(m, &msg);
}

static bool str_fits(const char *s)
{
        return !s || strnlen(s, VMHELPER_STRING_MAX + 1) <= VMHELPER_STRING_MAX;
}

/* What the daemon checks itself: the shape. The options are the helper's to judge. */
static int migrate_check_request(struct control_call *call, const Vsockmux__V1__MigrateRequest *req)
{
        if (!req->destination_uri[0] || req->destination_socket[0] != '/')
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                         "Migrate needs destination_uri and an absolute destination_socket");
        if (req->n_params > VMHELPER_PARAMS_MAX || req->n_io > VMHELPER_IO_MAX)
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "at most %u params and %u io entries",
                                         VMHELPER_PARAMS_MAX, VMHELPER_IO_MAX);
        if (!str_fits(req->destination_uri) || !str_fits(req->destination_socket) || !str_fits(req->source_uri) ||
            !str_fits(req->domain) || !str_fits(req->destination_name) ||
            (req->destination_transport_case ==
                     VSOCKMUX__V1__MIGRATE_REQUEST__DESTINATION_TRANSPORT_DESTINATION_HVSOCK_PATH &&
             !str_fits(req->destination_hvsock_path)))
                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "a Migrate string is over %u bytes",
                                         VMHELPER_STRING_MAX);
        for (size_t i = 0; i < req->n_params; i++)
                if (!str_fits(req->params[i]->key) || !str_fits(req->params[i]->value))
                        return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT, "a param is over %u bytes",
                                                 VMHELPER_STRING_MAX);
        for (size_t i = 0; i < req->n_io; i++)
                if (!str_fits(req->io[i]->stdin_path) || !str_fits(req->io[i]->stdout_path) ||
                    !str_fits(req->io[i]->stderr_path) || !str_fits(req->io[i]->exec_id))
                        return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                                 "an io path or exec id is over %u bytes", VMHELPER_STRING_MAX);
        return 1;
}

/* The destination's Restore checks --io against the saved state, but only once the source has
 * paused and saved, and backing out from there races libvirt's completion: an entry that names
 * no process of the VM now is refused here, before anything happens. (One the VM holds now may
 * still be refused there, had it gone by the save.) */
static int migrate_check_io(struct control_call *call, struct vmm_vm *vm, const Vsockmux__V1__MigrateRequest *req)
{
        for (size_t i = 0; i < req->n_io; i++) {
                const Vsockmux__V1__RestoreIo *io = req->io[i];

                if (io->exec_id && io->exec_id[0]) {
                        if (!vmm_process_find_id(vm, io->exec_id))
                                return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                                         "--io names exec %s, which VM %s does not hold", io->exec_id,
                                                         req->vm);
                } else if (io->pid != 0 && !vmm_process_find(vm, io->pid))
                        return control_call_fail(call, CONTROL_CODE_INVALID_ARGUMENT,
                                                 "--io names pid %u, which VM %s does not hold", io->pid, req->vm);
        }
        return 1;
}

static int migrate_abort(struct migrations *ms, struct control_call *call, const char *vm)
{
        Vsockmux__V1__MigrateResponse resp = VSOCKMUX__V1__MIGRATE_RESPONSE__INIT;
        struct migration *m = migration_find(ms, vm);

        if (!m)
                return control_call_fail(call, CONTROL_CODE_NOT_FOUND, "no migration of VM '%s' is running", vm);
        if (m->phase != MIGRATION_RUNNING)
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION,
                                         "the migration of VM '%s' is rolling back already", vm);
        migration_send_abort(m);
        return control_call_reply(call, &resp.base);
}

int migrations_on_call(struct migrations *ms, struct control_call *call, const Vsockmux__V1__MigrateRequest *req)
{
        const struct ucred *peer = control_call_peer(call);
        struct vmm_vm *vm;
        struct migration *m;
        int r;

        /* It drives libvirt and the destination daemon with this daemon's rights. */
        if (peer->uid != 0 && peer->uid != ms->owner_uid)
                return control_call_fail(call, CONTROL_CODE_PERMISSION_DENIED,
                                         "Migrate drives libvirt with the daemon's rights: only root and the "
                                         "daemon's owner may call it");
        if (req->abort)
                return migrate_abort(ms, call, req->vm);
        vm = vmm_vm_find(ms->vmm, req->vm);
        if (!vm)
                return control_call_fail(call, CONTROL_CODE_NOT_FOUND, "unknown VM '%s'", req->vm);
        if (migration_find(ms, req->vm) || vmm_vm_is_migrating(vm))
                return control_call_fail(call, CONTROL_CODE_FAILED_PRECONDITION, "VM %s is migrating or saved already",
                                         req->vm);
        r = migrate_check_request(call, req);
        if (r <= 0)
                return r;
        r = migrate_check_io(call, vm, req);
        if (r <= 0)
                return r;
        r = migration_new(ms, req, &m);
        if (r < 0)
                return r;
        r = migration_send_start(m, req);
        if (r < 0) {
                migration_free(m);
                return control_call_fail(call, CONTROL_CODE_UNAVAILABLE, "cannot start %s: %s", ms->helper_path,
                                         strerror(-r));
        }
        m->call = call;
        list_add_tail(&ms->list, &m->link);
        control_call_set_cancel(call, migration_on_cancel, m);
        log_info("migrate %s: to %s (vsockmuxd %s), helper pid %d", m->vm, req->destination_uri, m->dest_socket,
                 (int)vmhelper_pid(m->helper));
        return 0;
}

int migrations_new(struct relay *r, struct vmm *vmm, const struct migrations_config *cfg,
                   const struct migrations_ops *ops, void *userdata, struct migrations **ret)
{
        struct migrations *ms = calloc(1, sizeof(*ms));

        if (!ms)
                return -ENOMEM;
        ms->helper_path = strdup(cfg->helper_path ?: VSOCKMUX_VM_HELPER_DEFAULT);
        if (!ms->helper_path) {
                free(ms);
                return -ENOMEM;
        }
        ms->relay = r;
        ms->vmm = vmm;
        ms->owner_uid = cfg->owner_uid;
        ms->ops = ops;
        ms->userdata = userdata;
        list_init(&ms->list);
        *ret = ms;
        return 0;
}

struct migrations *migrations_free(struct migrations *ms)
{
        struct list_head *pos, *tmp;

        if (!ms)
                return NULL;
        list_for_each_safe(pos, tmp, &ms->list) {
                struct migration *m = list_entry(pos, struct migration, link);

                log_warn("migrate %s: the daemon stops during the migration; its helper is killed "
                         "(check the domain with virsh)",
                         m->vm);
                m->helper = vmhelper_free(m->helper);
                if (m->relay == MIGRATION_RELAY_SAVING) {
                        /* The save's callback still holds m: it frees it. */
                        list_del(&m->link);
                        list_init(&m->link);
                        m->ms = NULL;
                } else
                        migration_free(m);
        }
        free(ms->helper_path);
        free(ms);
        return NULL;
}
