/* relay/relay.h: the io_uring loop; owns the ring, buffer pool, timers, listeners, channels and streams; borrows nothing. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <liburing.h>

#include "util/macro.h"

/* ---- Loop ------------------------------------------------------------------------------ */

struct relay;

/* ring_entries: SQ size; buf_size * buf_count: the shared receive pool (<= RELAY_POOL_BYTES_MAX,
 * buf_count a power of two); stream_max_bufs (>= 2): the backpressure bound: a stream holds at
 * most stream_max_bufs * buf_size bytes read and not yet delivered (exactly, on kernels with
 * multishot receive budgets), in at most 2 * stream_max_bufs + 1 pool buffers. ring_bufs: free
 * buffers offered to the kernel at a time, so the most it receives per loop turn (0 = default,
 * at most buf_count); the rest of the pool waits in user space, the warmest first. */
struct relay_config {
        unsigned ring_entries;
        unsigned buf_size;
        unsigned buf_count;
        unsigned stream_max_bufs;
        unsigned ring_bufs;
        /* The splice path (splice.c) for a from-guest stream with a backlog: entered after a read of
         * at least splice_min bytes (0 = buf_size: a read that filled its buffer), kept while the
         * guest has that much waiting. splice_pipes: the pool it borrows pipes from (0 = default,
         * each pipe two fds, kept back from the stream capacity). splice_pipes_max: the pool may grow
         * to this many (0 = RELAY_SPLICE_PIPES_MAX, never below splice_pipes) on fds the streams
         * leave spare, and shrinks again as streams come, or once no pipe was lent for
         * splice_pipes_idle_ms (0 = 1,000). splice_pipe_size: bytes per pipe (0 = the kernel's
         * default). no_splice:
         * every byte goes through the ring. VSOCKMUX_RELAY_SPLICE_MIN=N in the environment sets
         * splice_min at relay_new() (tests force the path with 1). */
        unsigned splice_min;
        unsigned splice_pipes;
        unsigned splice_pipes_max;
        unsigned splice_pipes_idle_ms;
        unsigned splice_pipe_size;
        bool no_splice;
};

#define RELAY_POOL_BYTES_MAX (64u << 20)
#define RELAY_BUF_SIZE_MIN 4096u
#define RELAY_BUF_SIZE_MAX (1u << 20)
#define RELAY_BUF_COUNT_MAX 32768u /* kernel limit for one provided-buffer ring */
#define RELAY_RING_ENTRIES_MAX 32768u
#define RELAY_FD_HEADROOM 64u /* fds kept back from the stream capacity */
#define RELAY_SPLICE_PIPES_DEFAULT 256u
#define RELAY_SPLICE_PIPES_MAX 1024u
#define RELAY_SPLICE_PIPES_IDLE_MS_DEFAULT 1000u
#define RELAY_SPLICE_PIPE_SIZE_MAX (1u << 20) /* fs.pipe-max-size's default */

void relay_config_default(struct relay_config *c);

/* Raises RLIMIT_NOFILE to the hard limit and ignores SIGPIPE (writes to a vanished pipe must
 * fail with EPIPE, not kill the daemon). c may be NULL for the defaults. */
int relay_new(const struct relay_config *c, struct relay **ret);
struct relay *relay_free(struct relay *r);
DEFINE_CLEANUP(struct relay *, relay_free);

/* What happened that only a log wants to know: relay/ logs nothing, its owner writes the line.
 * Each kind names the fields it fills; the rest are zero or NULL. */
enum relay_event_kind {
        RELAY_EVENT_RING_FAILED,     /* error, what (the ring call): the loop is broken, relay_run fails */
        RELAY_EVENT_UNLINK_FAILED,   /* error, path: a listener that went left its socket file */
        RELAY_EVENT_LISTENER_FAILED, /* error; path (a socket file or relay_listen_fd's label), else port
                                      * (AF_VSOCK): its accept callback gets the error next */
        RELAY_EVENT_ACCEPT_RETRY,    /* error; path, else port: a transient accept failure, retried */
        RELAY_EVENT_PEER_UNKNOWN,    /* error, port, fd: an AF_VSOCK connection with no peer address, closed */
        RELAY_EVENT_CID_REFUSED,     /* port, cid: an AF_VSOCK connection from a CID nobody listens for, closed */
        /* stream.c's; label: the stream's (relay_stream_set_label) */
        RELAY_EVENT_STREAM_NOMEM,         /* label: no memory to hold a chunk; the stream fails -ENOMEM */
        RELAY_EVENT_ENDPOINT_FAILED,      /* label, error: the rest of the guest's output is dropped */
        RELAY_EVENT_RECV_BUDGET_REFUSED,  /* the kernel has no multishot recv byte budget: caps by cancel */
        RELAY_EVENT_READ_MSHOT_REFUSED,   /* label, error: READ_MULTISHOT refused, plain reads */
        RELAY_EVENT_STDIN_OVERCLAIMED,    /* label, bytes (the guest's count), sent: the stream fails -EPROTO */
        RELAY_EVENT_STDIN_LOST,           /* label, bytes: sent before the reconnect, never received */
        RELAY_EVENT_STDIN_END_MISCOUNTED, /* label, bytes (the guest's count at stdin's end), sent */
        _RELAY_EVENT_KIND_MAX,
        _RELAY_EVENT_KIND_INVALID = -EINVAL,
};

struct relay_event {
        enum relay_event_kind kind;
        int error; /* -errno or 0 */
        int fd;
        uint32_t port, cid;
        uint64_t bytes, sent;
        const char *path, *what, *label; /* or NULL; valid during the call only */
};

struct relay_ops {
        /* Optional. It must not free what raised the event (the listener, the stream). */
        void (*event)(struct relay *r, const struct relay_event *ev, void *userdata);
};
/* The owner's ops, borrowed until relay_free or the next call (NULL: events are dropped). The
 * objects still open at the end (relay_get_stats) are the owner's to report before relay_free. */
void relay_set_ops(struct relay *r, const struct relay_ops *ops, void *userdata);

/* Runs until relay_stop(); returns 0, or -errno on a fatal ring error. */
int relay_run(struct relay *r);
/* One iteration: submit, wait up to timeout_ns (-1 = forever, 0 = poll), dispatch completions,
 * expired timers and deferred calls. Returns 0 or -errno on a fatal ring error. */
int relay_run_once(struct relay *r, int64_t timeout_ns);
void relay_stop(struct relay *r);
uint64_t relay_now_ns(struct relay *r); /* CLOCK_MONOTONIC */
/* Streams this process can hold given RLIMIT_NOFILE (about two fds each, minus headroom). */
unsigned relay_stream_capacity(struct relay *r);

/* Generic ops so other rooms (bridge, control) run their own I/O on the same ring. The op must
 * stay allocated until its last completion (one without IORING_CQE_F_MORE) has been delivered. */
struct relay_op;
typedef void (*relay_op_fn)(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags);
struct relay_op {
        relay_op_fn fn;
};
/* Flushes the SQ when full; NULL only if the ring is broken. */
struct io_uring_sqe *relay_get_sqe(struct relay *r);
void relay_sqe_set_op(struct io_uring_sqe *sqe, struct relay_op *op);
/* An SQE whose completion is ignored (e.g. a cancel nobody waits for). */
void relay_sqe_set_ignore(struct io_uring_sqe *sqe);

/* A live upgrade's new daemon holds sockets the old one still serves until it commits: while
 * shared, closing one never shuts it down (that would end it for both) and a listener that goes
 * leaves its socket file (the other owner's listener still answers there). */
void relay_set_fds_shared(struct relay *r, bool shared);

/* Deferred call on the next loop iteration: breaks re-entrancy (callbacks that free their caller). */
int relay_defer(struct relay *r, void (*fn)(void *userdata), void *userdata);

/* ---- Timers (one-shot, re-armable; free is safe while armed: no callback after free) ---- */

struct relay_timer;
typedef void (*relay_timer_fn)(struct relay_timer *t, void *userdata);
int relay_timer_new(struct relay *r, relay_timer_fn fn, void *userdata, struct relay_timer **ret);
int relay_timer_arm(struct relay_timer *t, uint64_t after_ns);
void relay_timer_disarm(struct relay_timer *t);
bool relay_timer_is_armed(const struct relay_timer *t);
struct relay_timer *relay_timer_free(struct relay_timer *t);
DEFINE_CLEANUP(struct relay_timer *, relay_timer_free);

/* ---- Transports ------------------------------------------------------------------------ */

enum relay_transport_kind {
        RELAY_TRANSPORT_HVSOCK, /* Firecracker / Cloud Hypervisor: <uds_path>_<port> */
        RELAY_TRANSPORT_VSOCK,  /* AF_VSOCK, routed by the peer CID */
        _RELAY_TRANSPORT_MAX,
        _RELAY_TRANSPORT_INVALID = -EINVAL,
};

#define RELAY_UDS_PATH_MAX 108

struct relay_transport {
        enum relay_transport_kind kind;
        char uds_path[RELAY_UDS_PATH_MAX]; /* HVSOCK: the VM's vsock socket base path */
        uint32_t cid;                      /* VSOCK: the VM's CID */
        /* HVSOCK: the caller holds a lock no live process serves these paths without, so a socket
         * file found at a port's path is a dead owner's and is replaced without asking it: a
         * SIGKILLed daemon's listeners still answer for a while as the kernel tears down its ring. */
        bool owns_paths;
};

/* Writes "<uds>_<port>"; -ENAMETOOLONG when it does not fit buf or sun_path. */
int relay_transport_hvsock_path(const struct relay_transport *t, uint32_t port, char *buf, size_t len);
const char *relay_transport_kind_to_string(enum relay_transport_kind k);

/* ---- Listeners ------------------------------------------------------------------------- */

/* The accept callback gets ownership of fd (>= 0), or fd = -errno when the listener failed
 * (it is then done). A ONCE listener is done after its first connection. */
struct relay_listener;
enum relay_listen_mode {
        RELAY_LISTEN_ONCE,
        RELAY_LISTEN_MANY,
        _RELAY_LISTEN_MODE_MAX,
        _RELAY_LISTEN_MODE_INVALID = -EINVAL,
};
typedef void (*relay_accept_fn)(struct relay_listener *l, int fd, void *userdata);
/* The listening socket exists when this returns 0, so the guest may be asked to dial at once.
 * -EADDRINUSE when a live process owns the path; -ENAMETOOLONG when it exceeds sun_path. */
int relay_listen(struct relay *r, const struct relay_transport *t, uint32_t port, enum relay_listen_mode mode,
                 relay_accept_fn fn, void *userdata, struct relay_listener **ret);
/* Accepts on a socket the caller bound and put in listen state (control and attach sockets), with
 * the same multishot accept and transient-error retry. Takes fd on success only; `label` names it
 * in logs. Accepted fds are non-blocking and close-on-exec. */
int relay_listen_fd(struct relay *r, int fd, const char *label, enum relay_listen_mode mode, relay_accept_fn fn,
                    void *userdata, struct relay_listener **ret);
/* Cancels; removes the socket file (relay_listen only); no callback after. Safe inside the
 * accept callback. */
struct relay_listener *relay_listener_free(struct relay_listener *l);
DEFINE_CLEANUP(struct relay_listener *, relay_listener_free);
uint32_t relay_listener_port(const struct relay_listener *l);
/* A listener ends and hands its socket back still listening (free's close would shut it down for
 * every holder): a live upgrade passes it on. A relay_listen() listener on a hybrid-vsock path
 * leaves its socket file in place too, for relay_listen_adopt() in the other process. Frees l;
 * -EINVAL for an AF_VSOCK listener (one socket per port serves every VM) or one that is done. */
int relay_listener_release(struct relay_listener *l, int *ret_fd);
/* The other side of a release: listens on fd, a hybrid-vsock socket bound to t's path for port
 * and listening, as relay_listen() would have (the socket file is the listener's again, removed by
 * relay_listener_free()). Takes fd on success only. -ENOTSOCK for an fd that is not a listening
 * Unix stream socket, -EINVAL for an AF_VSOCK transport. */
int relay_listen_adopt(struct relay *r, const struct relay_transport *t, uint32_t port, int fd,
                       enum relay_listen_mode mode, relay_accept_fn fn, void *userdata, struct relay_listener **ret);

/* ---- Byte channels for message protocols (bridge, ttrpc control, attach) -------------- */

struct relay_chan;
struct relay_chan_ops {
        /* All received, not-yet-consumed bytes; return bytes consumed (0..len) or -errno to close
         * the channel. For packet channels (SOCK_SEQPACKET) each call is exactly one packet. */
        ssize_t (*on_data)(struct relay_chan *c, const void *data, size_t len, void *userdata);
        /* Exactly once, when the channel ends (error 0 = peer EOF or relay_chan_close finished).
         * The channel is freed by the relay right after this returns; don't touch it again. */
        void (*on_close)(struct relay_chan *c, int error, void *userdata);
};
/* max_rx: largest unconsumed input (or packet) accepted, else the channel closes with -EMSGSIZE;
 * max_tx: queued output bound. 0 picks RELAY_CHAN_DEFAULT_MAX. */
struct relay_chan_limits {
        size_t max_rx;
        size_t max_tx;
        bool packet;
};
#define RELAY_CHAN_DEFAULT_MAX (1u << 20)
#define RELAY_CHAN_LIMIT_MAX (256u << 20)

int relay_chan_new(struct relay *r, int fd, const struct relay_chan_ops *ops, const struct relay_chan_limits *lim,
                   void *userdata, struct relay_chan **ret); /* takes fd on success */
int relay_chan_send(struct relay_chan *c, const void *data,
                    size_t len); /* copies; -ENOBUFS over max_tx; -EPIPE after close */
int relay_chan_sendv(struct relay_chan *c, const struct iovec *iov, int iovcnt); /* one frame from pieces */
size_t relay_chan_tx_pending(struct relay_chan *c);
void relay_chan_close(struct relay_chan *c);            /* flush tx, then close; on_close(0) follows (deferred) */
void relay_chan_abort(struct relay_chan *c, int error); /* close now, drop tx; on_close(error) follows (deferred) */
/* Detaches the owner: closes now, drops tx, and on_close is NOT called. Safe inside callbacks. */
struct relay_chan *relay_chan_free(struct relay_chan *c);
int relay_chan_fd(struct relay_chan *c); /* for SO_PEERCRED */

/* A live upgrade hands a byte channel (not a packet one: -EOPNOTSUPP) to another process.
 * hold: stops reading, delivering and sending; bytes a cancelled receive still brings in are kept,
 * not delivered. fn runs once nothing is in flight (never inside the call); a peer that closes
 * meanwhile ends the channel as usual (on_close, no fn). -EPIPE after close, -EALREADY if held. */
typedef void (*relay_chan_held_fn)(struct relay_chan *c, void *userdata);
int relay_chan_hold(struct relay_chan *c, relay_chan_held_fn fn, void *userdata);
/* Rolls a hold back: what was kept is delivered, reading and sending go on. */
void relay_chan_unhold(struct relay_chan *c);
/* After fn: hands back the fd, what was received and not consumed, and what was queued and not
 * sent (the unsent tail of a frame included), both malloc'd (NULL when empty); frees c without
 * on_close. -EBUSY before fn ran. */
int relay_chan_release(struct relay_chan *c, int *ret_fd, uint8_t **ret_rx, size_t *ret_rx_len, uint8_t **ret_tx,
                       size_t *ret_tx_len);
/* The other side: relay_chan_new() with rx (the released received bytes) delivered first, on a
 * later loop turn, and tx (the released unsent bytes) sent before anything sent later; both copied.
 * -EMSGSIZE for rx over lim's max_rx or tx over its max_tx. */
int relay_chan_adopt(struct relay *r, int fd, const struct relay_chan_ops *ops, const struct relay_chan_limits *lim,
                     const void *rx, size_t rx_len, const void *tx, size_t tx_len, void *userdata,
                     struct relay_chan **ret);

/* ---- Streams --------------------------------------------------------------------------- */

enum relay_stream_dir {
        RELAY_STREAM_TO_GUEST,   /* stdin: endpoint -> guest */
        RELAY_STREAM_FROM_GUEST, /* stdout/stderr: guest -> endpoint */
        _RELAY_STREAM_DIR_MAX,
        _RELAY_STREAM_DIR_INVALID = -EINVAL,
};

struct relay_stream_counters {
        uint64_t rx_guest, tx_guest, rx_endpoint, tx_endpoint;
};

struct relay_stream;
struct relay_stream_ops {
        /* 0 = EOF reached and flushed; -EPIPE endpoint vanished; -ECONNRESET guest dropped ...
         * The stream stays allocated until relay_stream_free. */
        void (*on_done)(struct relay_stream *s, int error, void *userdata);
        /* After relay_stream_freeze: nothing in flight, all read bytes flushed. */
        void (*on_frozen)(struct relay_stream *s, void *userdata);
        /* Optional copy of delivered bytes (data is only valid during the call). */
        void (*on_tap)(struct relay_stream *s, const void *data, size_t len, void *userdata);
        /* Optional, with on_tap: whether anybody wants the copy now. Without it a tapped stream is
         * always copied through the ring; with it, a from-guest stream may take the splice path
         * while nobody taps (asked before every read from the guest there). */
        bool (*tap_wanted)(struct relay_stream *s, void *userdata);
};

/* Takes both fds on success; endpoint_fd may be -1: from the guest, discard, keeping counters and
 * the tap; to the guest, an input that already ended (the guest hears the end, after the header). */
int relay_stream_new(struct relay *r, enum relay_stream_dir dir, int guest_fd, int endpoint_fd,
                     const struct relay_stream_ops *ops, void *userdata, struct relay_stream **ret);
/* The same with counters starting at *seed (NULL = zero) and, with send_offset_header, the V4
 * resume handshake first (see replace_guest). */
int relay_stream_new_at(struct relay *r, enum relay_stream_dir dir, int guest_fd, int endpoint_fd,
                        const struct relay_stream_ops *ops, const struct relay_stream_counters *seed,
                        bool send_offset_header, void *userdata, struct relay_stream **ret);
/* Delivery acks (the guest agreed to BRIDGE_STDIO_ACK_FIELD): a from-guest stream sends the guest,
 * on its connection, 8-byte little-endian counts of the bytes that left the relay (taken by the
 * endpoint, or dropped by a dead or discarding one), so the guest frees its replay buffer only
 * up to what a crashed daemon can no longer lose. One goes out whenever the count grew by
 * RELAY_STREAM_ACK_STEP, once nothing is held, and first on every new connection (after the resume
 * header); one send at a time, the next carrying the newest count. A freeze waits for the send in
 * flight. -EINVAL for a to-guest stream. */
#define RELAY_STREAM_ACK_STEP (32u * 1024u)
int relay_stream_set_ack(struct relay_stream *s, bool on);
/* The stdin end confirmation (the guest agreed to BRIDGE_STDIN_EOF_FIELD): a to-guest stream, at its
 * end, half-closes as always, reports on_done, and keeps the connection until the guest sends its
 * 8-byte little-endian received count (or closes, or fails), so the guest can tell the end from a
 * host that went away. A freeze, a detach and a free do not wait for it. -EINVAL for a from-guest
 * stream. */
int relay_stream_set_eof_confirm(struct relay_stream *s, bool on);
/* The counters relay_stream_new_at() was seeded with may trail the guest (a crash's record): a
 * to-guest stream takes a guest count above them, before it sent anything, as sent (a file endpoint
 * moves there). Call before the header can land: right after relay_stream_new_at(). */
void relay_stream_set_seed_stale(struct relay_stream *s);
/* Ends a to-guest stream's input early (CloseStdin): no more reads; what was read still goes to
 * the guest, then the endpoint is closed and the guest gets the end as at the endpoint's own end
 * (the half-close, and with relay_stream_set_eof_confirm the wait for its count); an ended stream
 * gives a redialling guest the end. -EINVAL for a from-guest stream. */
int relay_stream_end_input(struct relay_stream *s);
/* Names the stream in the events it raises (relay_event.label, e.g. "vm1 pid 42 stdout port 1234"). */
void relay_stream_set_label(struct relay_stream *s, const char *label);
void relay_stream_get_counters(const struct relay_stream *s, struct relay_stream_counters *ret);
void relay_stream_seed_counters(struct relay_stream *s, const struct relay_stream_counters *c);
/* Bytes and pool buffers currently held (read, not yet delivered); see struct relay_config. */
void relay_stream_get_held(const struct relay_stream *s, size_t *ret_bytes, unsigned *ret_bufs);
/* Stops reading, flushes what was read, then on_frozen. A from-guest stream first reads what the
 * kernel held at the call (SIOCINQ; without it, until the socket is dry, at most one cap's worth):
 * bytes the guest wrote before a save are delivered, not lost with the connection. Bytes written
 * after the call stay in the socket. An ended stream (on_done reported) freezes as well, with
 * nothing to drain: a new guest then finds it frozen, and resume ends it again if none came.
 * -EALREADY if frozen or freezing. */
int relay_stream_freeze(struct relay_stream *s);
int relay_stream_resume(struct relay_stream *s);
/* Only on a frozen or done stream. send_offset_header: the V4 resume handshake comes first, an
 * 8-byte little-endian count: FROM_GUEST writes how many bytes we already received, so the guest
 * resumes there; TO_GUEST reads how many the guest received (bytes it lost cannot be sent again:
 * that is logged; a count above what was sent fails the stream with -EPROTO, unless nothing was
 * sent since relay_stream_new_at's seed and relay_stream_set_seed_stale() said the seed may trail the
 * guest: a record written before a crash). Over a regular file
 * endpoint the file moves to right after the guest's count, so nothing is skipped or repeated.
 * Takes guest_fd whatever it returns, except -EBUSY (the old connection is not frozen or done, or
 * has an operation in flight): then nothing changed and guest_fd stays the caller's, to try again. */
int relay_stream_replace_guest(struct relay_stream *s, int guest_fd, bool send_offset_header);
/* On a frozen or done stream: closes the guest connection (a save hands the port to another
 * daemon), keeping the endpoint, held bytes and counters for a later replace_guest. */
int relay_stream_detach_guest(struct relay_stream *s);
/* A live upgrade hands the stream to another process: on a frozen or ended stream with nothing held (every
 * byte read was delivered), ends it without closing either fd and hands both back with the
 * counters, for relay_stream_new_at() there to go on exactly where this one stopped (bytes the
 * guest wrote since stay in its socket). Frees s. -EBUSY while anything is held or in flight on
 * a connection, -EINVAL unless frozen or ended; s is untouched then. */
int relay_stream_release(struct relay_stream *s, int *ret_guest_fd, int *ret_endpoint_fd,
                         struct relay_stream_counters *ret_counters);
/* Safe any time, also inside its own callbacks; no callback after. */
struct relay_stream *relay_stream_free(struct relay_stream *s);
DEFINE_CLEANUP(struct relay_stream *, relay_stream_free);
const char *relay_stream_dir_to_string(enum relay_stream_dir d);

/* ---- Daemon-wide numbers for `vsockmux stats` ----------------------------------------- */

#define RELAY_STATS_CQE_BUCKETS 12 /* the last is 1,024 and up: a turn dispatches at most 1,024 */

struct relay_stats {
        uint64_t bytes_relayed;
        unsigned streams;
        unsigned listeners;
        unsigned chans;
        unsigned pool_bufs_total;  /* used so far (touched memory): grows with load up to buf_count */
        unsigned pool_bufs_in_use; /* held by streams (read, not yet delivered) */
        size_t pool_bytes;         /* address space reserved for the pool (buf_size * buf_count) */
        size_t pool_buf_size;
        uint64_t bytes_spliced;     /* of bytes_relayed, what went by splice(2) */
        unsigned splice_pipes;      /* open now (at most splice_pipes_max of the config) */
        unsigned splice_pipes_lent; /* held by streams with bytes in flight */
        /* What the loop's turns look like, so wake-ups per message can be read off: every
         * relay_run_once() is a turn; turns_waited asked the kernel to block (nothing was ready);
         * sleeps is how often the loop's thread blocked (its voluntary context switches since
         * relay_new(), read here: a wait that found completions at once does not count);
         * cqes_per_turn[0] counts turns with no completion, [i] turns with 2^(i-1) .. 2^i - 1. */
        uint64_t turns;
        /* Spent in io_uring_enter waits. Not idle time: with DEFER_TASKRUN the kernel runs the
         * receives and sends there (bench B6: 0.7-1.1 s of waits, 3 sleeps); sleeps is the idle
         * count. */
        uint64_t wait_ns;
        uint64_t turns_waited;
        uint64_t sleeps;
        uint64_t cqes;
        uint64_t cqes_per_turn[RELAY_STATS_CQE_BUCKETS];
};
void relay_get_stats(struct relay *r, struct relay_stats *ret);
