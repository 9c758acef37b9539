/* daemon/guest.h: struct vmm_guest, what a VM lends the rooms below it (containers, processes): its name, the guest's bridge, its ports and how the guest dials; the VM owns it, keeps it current and outlives them. */
#pragma once

#include "daemon/context.h"
#include "ports/ports.h"

struct vmm_guest {
        const struct vmm_context *ctx;
        const char *vm_name;
        struct bridge_host *bridge; /* NULL until the VM listens for it */
        struct ports *ports;
        /* What relay/ binds, unlinks and connects by: HVSOCK paths go through the VM's directory
         * fd (/proc/self/fd/N/name). */
        const struct relay_transport *listen_transport;
        bool stdio_resume; /* V4 agreed: every stdio connection starts with the byte count */
        bool stdio_ack;    /* delivery acks agreed too: stdout/stderr tell the guest what was delivered */
        bool stdin_eof;    /* the stdin end confirmation agreed too: a stdin's end waits for the guest's count */
        bool removing;
        bool saved; /* state handed out: no listeners or guest connections here */
};
