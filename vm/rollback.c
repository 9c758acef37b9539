/* vm/rollback.c: abort a domain's migration job from a fresh connection and make it run on the source. */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vm/libvirt.h"
#include "vm/rollback.h"

#define VM_ROLLBACK_POLL_MS 100u

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000l };

        nanosleep(&ts, NULL);
}

/* Until libvirt reports no job on the domain; -ETIMEDOUT after wait_ms. A domain that vanished
 * meanwhile has no job either. */
static int wait_no_job(virDomainPtr dom, unsigned wait_ms)
{
        for (unsigned waited = 0;; waited += VM_ROLLBACK_POLL_MS) {
                virDomainJobInfo info;

                if (virDomainGetJobInfo(dom, &info) < 0 || info.type == VIR_DOMAIN_JOB_NONE)
                        return 0;
                if (waited >= wait_ms)
                        return -ETIMEDOUT;
                sleep_ms(VM_ROLLBACK_POLL_MS);
        }
}

/* Whether the domain runs on this connection's host, resuming it if a migration paused it. */
static int domain_back(virConnectPtr c, const char *domain, bool *ret_on_source, char *err, size_t errlen)
{
        char msg[VM_LIBVIRT_MESSAGE_MAX];
        virDomainPtr dom = virDomainLookupByName(c, domain);
        int state = 0, reason = 0, r = 0;

        if (!dom) {
                *ret_on_source = false;
                return 0;
        }
        if (virDomainGetState(dom, &state, &reason, 0) < 0)
                state = VIR_DOMAIN_NOSTATE;
        if (state == VIR_DOMAIN_PAUSED && virDomainResume(dom) < 0) {
                r = vm_libvirt_error(msg, sizeof(msg));
                snprintf(err, errlen, "resume %s on the source: %s", domain, msg);
        }
        *ret_on_source = r == 0 && (state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED);
        virDomainFree(dom);
        return r;
}

int vm_rollback_domain(const char *src_uri, const char *domain, unsigned wait_ms, bool *ret_on_source, char *err,
                       size_t errlen)
{
        virConnectPtr c;
        virDomainPtr dom;
        int r;

        r = vm_libvirt_setup();
        if (r < 0) {
                snprintf(err, errlen, "libvirt setup failed");
                return r;
        }
        c = vm_libvirt_open(src_uri, "source libvirt", err, errlen, &r);
        if (!c)
                return r;
        dom = virDomainLookupByName(c, domain);
        if (dom) {
                (void)virDomainAbortJob(dom); /* no job left is what we want too */
                r = wait_no_job(dom, wait_ms);
                virDomainFree(dom);
                if (r < 0) {
                        snprintf(err, errlen, "libvirt did not end %s's migration job within %u ms", domain, wait_ms);
                        virConnectClose(c);
                        return r;
                }
        }
        r = domain_back(c, domain, ret_on_source, err, errlen);
        virConnectClose(c);
        return r;
}
