/* daemon/vmm-internal.h: the structures behind daemon/vmm.h, shared by vmm.c, process.c and the save/restore files; owns nothing itself. */
#pragma once

#include "daemon/attach.h"
#include "daemon/vmm.h"
#include "ports/ports.h"
#include "util/list.h"

struct vmm {
        struct relay *relay;
        struct vmm_config cfg;
        char *attach_dir;
        vmm_event_fn event_fn;
        void *event_userdata;
        struct list_head vms;
        unsigned n_vms;
};

struct vmm_container {
        struct list_head link;
        struct vmm_vm *vm;
        char *id;
        bool watched;
};

struct vmm_vm {
        struct list_head link;
        struct vmm *vmm;
        char *name;
        struct relay_transport transport;
        struct ports *ports;
        struct bridge_host *bridge;
        struct list_head processes;
        unsigned n_processes;
        unsigned n_exited;
        struct list_head containers;
        unsigned n_containers;
        unsigned exec_seq;              /* names attach sockets before the pid is known */
        bool removing;
};

struct vmm_stream {
        struct vmm_process *process;
        enum vmm_stream_kind kind;
        uint32_t port;                  /* 0 = the process has no such stream */
        int endpoint_fd;                /* until the guest connects and the stream takes it */
        char *endpoint;                 /* the path the client named; NULL = kept for attach */
        struct relay_listener *listener;
        struct relay_stream *stream;
        struct relay_stream_counters counters;  /* the last known, kept after the stream is gone */
        bool done;
        int error;
};

struct vmm_waiter {
        struct list_head link;
        struct vmm_process *process;
        vmm_exit_fn fn;
        void *userdata;
};

struct vmm_process {
        struct list_head link;
        struct vmm_vm *vm;
        uint32_t pid;
        char *container_id;
        char **argv;
        size_t n_argv;
        char **env;
        size_t n_env;
        char *cwd;
        enum vmm_process_state state;
        struct vmm_stream streams[_VMM_STREAM_KIND_MAX];
        uint64_t wait_call_id;
        bool wait_outstanding;
        bool exit_known;
        bool exit_reported;
        struct vmm_exit exit;
        struct list_head waiters;
        struct attach *attach;
        struct relay_timer *timer;      /* connect timeout while pending, drain timeout after exit */
        vmm_started_fn started_fn;
        void *started_userdata;
        bool in_exec;                   /* ExecuteProcess outstanding: its callback holds a pointer */
};

/* process.c, for vmm.c */
void vmm_process_bridge_connected(struct vmm_vm *vm);
void vmm_process_vm_teardown(struct vmm_vm *vm, const char *reason);
void vmm_emit(struct vmm *m, enum vmm_event_kind kind, const char *vm, const char *container_id, uint32_t pid,
              const struct vmm_exit *exit, const char *message);
