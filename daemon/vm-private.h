/* daemon/vm-private.h: struct vmm_vm, for the vm room's files (vm.c, vm-state.c, vm-fence.c) only. */
#pragma once

#include "daemon/container.h"
#include "daemon/process.h"
#include "daemon/vm.h"

/* A VM's life; every transition goes through vm_set_state() (vm-state.c). */
enum vm_state {
        VM_ACTIVE,
        VM_FROZEN,      /* a save holds it frozen (vmm_vm_freeze) */
        VM_SAVED,       /* state handed out: no listeners or guest connections here */
        VM_REATTACHING, /* restored or resumed: waiting for the guest to come back */
        VM_HANDED_OVER, /* a live upgrade gave its connections to the new daemon: nothing is live here */
        VM_REMOVING,
        _VM_STATE_MAX,
};

struct vmm_vm {
        struct list_head link; /* in the manager's list */
        const struct vmm_context *ctx;
        const struct vmm_vm_ops *ops;
        void *userdata;
        char *name;
        struct relay_transport transport; /* as the client named it: shown, saved, compared */
        struct relay_transport listen_transport;
        int hvsock_dir_fd;      /* the VM's directory, opened once at add */
        struct vmm_guest guest; /* lent to the containers and processes: bridge, ports */
        struct vmm_processes *processes;
        struct vmm_containers *containers;
        enum vm_state state;
        struct {
                const struct vmm_vm_freeze_ops *ops; /* NULL: nobody holds the VM frozen */
                void *userdata;
                unsigned pending;
        } freeze;
        unsigned quiesce_pending;         /* streams a stop froze, still flushing */
        uint64_t quiesce_ns;              /* when a stop froze them (0: none): its wait for the probes */
        struct relay_timer *window_timer; /* closes the resume window some time after the guest returned */
        struct vmm_vm_counters counters;  /* the VM's own cumulative ones; the rest are computed when asked */
        uint64_t restore_start_ns;        /* restored, guest not back yet: when the restore began */
        bool bridge_adopting;             /* inside vm_adopt_bridge(): the guest did not connect anew */
        struct fence *fence;              /* our hold on the transport's lock (vm-fence.c) */
        uint64_t generation;              /* of the state we serve; a saved state carries it */
        struct {                          /* a live upgrade's hold (vm-handover.c) */
                const struct vmm_vm_freeze_ops *ops;
                void *userdata;
                struct bridge_host_handover bridge; /* what the bridge handed out, until the VM goes */
        } handover;
};

/* vm-state.c, for vm.c */
void vm_set_state(struct vmm_vm *vm, enum vm_state state);
void vm_reattach_bridge_connected(struct vmm_vm *vm);
void vm_freeze_gone(struct vmm_vm *vm);
void vm_on_stream_frozen(void *userdata);
/* vm.c, for vm-handover.c: the bridge adopted from a live upgrade, configured as vmm_vm_start_bridge()'s. */
int vm_adopt_bridge(struct vmm_vm *vm, struct bridge_host_handover *hv);
/* The stdio extensions a saved or handed-over VM's guest agreed to (acks only with resume). */
void vm_take_stdio_modes(struct vmm_vm *vm, const Vsockmux__State__Vm *sv);
