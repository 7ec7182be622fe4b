/*
 * CLinuxIO — the Linux storage interfaces Swift's Glibc module cannot see.
 *
 * Swift imports Glibc without _GNU_SOURCE, so fallocate(2), pwritev2(2),
 * preadv2(2), O_DIRECT, SEEK_DATA/SEEK_HOLE, the FALLOC_FL_* and RWF_* flags and
 * the block-device ioctls are invisible to it, and there is no io_uring at all
 * without liburing (which would be a new system package). This target is
 * compiled with _GNU_SOURCE against the kernel's own <linux/io_uring.h> and
 * <linux/fs.h> (present on every Linux machine with kernel headers) and offers:
 *
 *  - thin wrappers that return a result or -errno (never touch errno's caller
 *    semantics), for the file operations the block backends need;
 *  - a minimal io_uring (setup, SQE preparation, submit, reap) in the style of
 *    liburing, for the asynchronous namespace engine.
 *
 * Every function is safe to call with any argument values; the io_uring ring
 * functions require a ring that clinux_uring_setup() initialised and that no
 * other thread uses at the same time (one submitter and reaper, the controller
 * thread).
 */
#ifndef CLINUXIO_H
#define CLINUXIO_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __linux__

/* ------------------------------------------------------------------ constants */

/* fallocate(2) modes, <linux/falloc.h> */
extern const int clinux_FALLOC_FL_KEEP_SIZE;
extern const int clinux_FALLOC_FL_PUNCH_HOLE;
extern const int clinux_FALLOC_FL_ZERO_RANGE;
/* pwritev2(2) flags, <linux/fs.h> */
extern const int clinux_RWF_DSYNC;
/* open(2) */
extern const int clinux_O_DIRECT;
/* lseek(2) */
extern const int clinux_SEEK_DATA;
extern const int clinux_SEEK_HOLE;

/* ------------------------------------------------------------------ file operations */

/** fallocate(2): 0 or -errno. */
int clinux_fallocate(int fd, int mode, int64_t offset, int64_t length);
/** pwritev2(2): bytes written or -errno. */
int64_t clinux_pwritev2(int fd, const struct iovec *iov, int count, int64_t offset, int flags);
/** preadv(2): bytes read or -errno. */
int64_t clinux_preadv(int fd, const struct iovec *iov, int count, int64_t offset);
/** lseek(2) with SEEK_DATA/SEEK_HOLE: the offset or -errno. */
int64_t clinux_lseek(int fd, int64_t offset, int whence);

/** BLKGETSIZE64: the device size in bytes into *bytes; 0 or -errno. */
int clinux_block_size_bytes(int fd, uint64_t *bytes);
/** BLKSSZGET: the logical block size; 0 or -errno. */
int clinux_block_logical_size(int fd, uint32_t *size);
/** BLKROTATIONAL: 1 rotational, 0 not; 0 or -errno. */
int clinux_block_rotational(int fd, uint32_t *rotational);
/** BLKDISCARD over [offset, offset+length): 0 or -errno. */
int clinux_block_discard(int fd, uint64_t offset, uint64_t length);
/** BLKZEROOUT over [offset, offset+length): 0 or -errno. */
int clinux_block_zeroout(int fd, uint64_t offset, uint64_t length);

/**
 * statx(2) STATX_DIOALIGN: the memory and file-offset alignment O_DIRECT needs
 * (kernel 6.1+ for regular files on most file systems). 0 when known, -errno
 * when the kernel or the file system does not say (both outputs then 0).
 */
int clinux_direct_io_alignment(int fd, uint32_t *memory_align, uint32_t *offset_align);

/** major(3) and minor(3) of a device number. */
uint32_t clinux_device_major(uint64_t device);
uint32_t clinux_device_minor(uint64_t device);

/** eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): the descriptor or -errno. */
int clinux_eventfd(void);
/** Adds 1 to the eventfd counter: 0 or -errno (EAGAIN when it would overflow). */
int clinux_eventfd_signal(int fd);
/** Resets the counter without blocking; 1 if it was non-zero, 0 if it was zero, or -errno. */
int clinux_eventfd_drain(int fd);
/** Blocks until the eventfd is readable (poll(2)); timeout_ms < 0 waits forever.
    1 readable, 0 timed out, -errno (EINTR included). */
int clinux_eventfd_wait(int fd, int timeout_ms);

/* ------------------------------------------------------------------ io_uring */

/** One completion, copied out of the ring. */
typedef struct clinux_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} clinux_cqe;

/** A ring and its mappings. Opaque to Swift apart from being allocated there. */
typedef struct clinux_uring {
    int fd;
    uint32_t features;
    uint32_t sq_entries;
    uint32_t cq_entries;
    /* submission ring (shared with the kernel) */
    uint32_t *sq_head;
    uint32_t *sq_tail;
    uint32_t sq_mask;
    uint32_t *sq_flags;
    uint32_t *sq_array;
    void *sqes;            /* struct io_uring_sqe[sq_entries] */
    uint32_t sqe_head;     /* local: SQEs handed to the kernel up to here */
    uint32_t sqe_tail;     /* local: SQEs prepared up to here */
    /* completion ring (shared with the kernel) */
    uint32_t *cq_head;
    uint32_t *cq_tail;
    uint32_t cq_mask;
    void *cqes;            /* struct io_uring_cqe[cq_entries] */
    /* mappings, for teardown */
    void *sq_ring_ptr;
    size_t sq_ring_size;
    void *cq_ring_ptr;
    size_t cq_ring_size;
    size_t sqes_size;
} clinux_uring;

/** Opcodes the engine uses (values of enum io_uring_op). */
extern const uint8_t clinux_IORING_OP_READV;
extern const uint8_t clinux_IORING_OP_WRITEV;
extern const uint8_t clinux_IORING_OP_READ;
extern const uint8_t clinux_IORING_OP_WRITE;
extern const uint8_t clinux_IORING_OP_FSYNC;
extern const uint8_t clinux_IORING_OP_FALLOCATE;
extern const uint8_t clinux_IORING_OP_ASYNC_CANCEL;
extern const uint8_t clinux_IORING_OP_NOP;
/** Setup flags (io_uring_setup(2)). */
extern const uint32_t clinux_IORING_SETUP_SINGLE_ISSUER;
/** IORING_FSYNC_DATASYNC */
extern const uint32_t clinux_IORING_FSYNC_DATASYNC;
/** IORING_ASYNC_CANCEL_ANY (5.19+): cancel every request. */
extern const uint32_t clinux_IORING_ASYNC_CANCEL_ANY;

/**
 * io_uring_setup(2) with `entries` submission entries and `cq_entries`
 * completion entries (IORING_SETUP_CQSIZE when non-zero), then maps the rings.
 * 0 or -errno (ENOSYS: no io_uring; EPERM: refused by policy or seccomp).
 */
int clinux_uring_setup(clinux_uring *ring, uint32_t entries, uint32_t cq_entries, uint32_t flags);
/** Unmaps the rings and closes the descriptor. Idempotent. */
void clinux_uring_teardown(clinux_uring *ring);
/** IORING_REGISTER_EVENTFD: the kernel signals `eventfd` on every completion. 0 or -errno. */
int clinux_uring_register_eventfd(clinux_uring *ring, int eventfd);

/** Free submission entries (prepared but unsubmitted ones count as used). */
uint32_t clinux_uring_sq_space(const clinux_uring *ring);
/** Prepared entries not yet handed to the kernel. */
uint32_t clinux_uring_sq_pending(const clinux_uring *ring);

/**
 * Prepares one read/write-style entry (READ, WRITE, READV, WRITEV, FSYNC,
 * FALLOCATE, NOP, ASYNC_CANCEL): `addr`, `len`, `offset` and `op_flags`
 * (rw_flags, fsync_flags or cancel_flags) are stored as the kernel reads them
 * for that opcode. Returns 0, or -EBUSY when the submission ring is full.
 */
int clinux_uring_prep(clinux_uring *ring, uint8_t opcode, int fd, uint64_t addr, uint32_t len,
                      uint64_t offset, uint32_t op_flags, uint64_t user_data);

/**
 * Hands every prepared entry to the kernel and, with `wait_nr` > 0, waits until
 * at least that many completions are available (io_uring_enter(2) with
 * IORING_ENTER_GETEVENTS). Returns the number of entries the kernel consumed,
 * or -errno (EINTR, EAGAIN, EBUSY: the caller retries later; entries not
 * consumed stay prepared).
 */
int clinux_uring_submit(clinux_uring *ring, uint32_t wait_nr);

/** Completions waiting in the completion ring (acquire load of the tail). */
uint32_t clinux_uring_cq_ready(const clinux_uring *ring);

/**
 * Copies up to `max` completions into `out` and releases their ring slots.
 * Returns how many were copied.
 */
uint32_t clinux_uring_reap(clinux_uring *ring, clinux_cqe *out, uint32_t max);

/* glibc's malloc tuning, which Swift's Glibc module does not declare:
 * M_MMAP_THRESHOLD and M_TRIM_THRESHOLD set to the given bytes. Returns 1 when
 * glibc accepted both. */
int clinux_malloc_tuning(int mmap_threshold, int trim_threshold);

#endif /* __linux__ */
#endif /* CLINUXIO_H */
