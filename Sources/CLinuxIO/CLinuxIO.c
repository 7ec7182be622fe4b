/*
 * CLinuxIO — see include/CLinuxIO.h. Compiled with _GNU_SOURCE so that glibc
 * declares the Linux-only interfaces, and against the kernel's uapi headers
 * for io_uring and the block-device ioctls.
 */
#define _GNU_SOURCE
#include "CLinuxIO.h"

#ifdef __linux__
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/stat.h>

const int clinux_FALLOC_FL_KEEP_SIZE = FALLOC_FL_KEEP_SIZE;
const int clinux_FALLOC_FL_PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE;
const int clinux_FALLOC_FL_ZERO_RANGE = FALLOC_FL_ZERO_RANGE;
const int clinux_RWF_DSYNC = RWF_DSYNC;
const int clinux_O_DIRECT = O_DIRECT;
const int clinux_SEEK_DATA = SEEK_DATA;
const int clinux_SEEK_HOLE = SEEK_HOLE;

const uint8_t clinux_IORING_OP_READV = IORING_OP_READV;
const uint8_t clinux_IORING_OP_WRITEV = IORING_OP_WRITEV;
const uint8_t clinux_IORING_OP_READ = IORING_OP_READ;
const uint8_t clinux_IORING_OP_WRITE = IORING_OP_WRITE;
const uint8_t clinux_IORING_OP_FSYNC = IORING_OP_FSYNC;
const uint8_t clinux_IORING_OP_FALLOCATE = IORING_OP_FALLOCATE;
const uint8_t clinux_IORING_OP_ASYNC_CANCEL = IORING_OP_ASYNC_CANCEL;
const uint8_t clinux_IORING_OP_NOP = IORING_OP_NOP;
const uint32_t clinux_IORING_FSYNC_DATASYNC = IORING_FSYNC_DATASYNC;
const uint32_t clinux_IORING_SETUP_SINGLE_ISSUER = IORING_SETUP_SINGLE_ISSUER;
#ifdef IORING_ASYNC_CANCEL_ANY
const uint32_t clinux_IORING_ASYNC_CANCEL_ANY = IORING_ASYNC_CANCEL_ANY;
#else
const uint32_t clinux_IORING_ASYNC_CANCEL_ANY = 1U << 2;
#endif

/* ------------------------------------------------------------------ file operations */

int clinux_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length) == 0 ? 0 : -errno;
}

int64_t clinux_pwritev2(int fd, const struct iovec *iov, int count, int64_t offset, int flags) {
    ssize_t n = pwritev2(fd, iov, count, (off_t)offset, flags);
    return n >= 0 ? (int64_t)n : -(int64_t)errno;
}

int64_t clinux_preadv(int fd, const struct iovec *iov, int count, int64_t offset) {
    ssize_t n = preadv(fd, iov, count, (off_t)offset);
    return n >= 0 ? (int64_t)n : -(int64_t)errno;
}

int64_t clinux_lseek(int fd, int64_t offset, int whence) {
    off_t r = lseek(fd, (off_t)offset, whence);
    return r >= 0 ? (int64_t)r : -(int64_t)errno;
}

int clinux_block_size_bytes(int fd, uint64_t *bytes) {
    return ioctl(fd, BLKGETSIZE64, bytes) == 0 ? 0 : -errno;
}

int clinux_block_logical_size(int fd, uint32_t *size) {
    int value = 0;
    if (ioctl(fd, BLKSSZGET, &value) != 0) return -errno;
    *size = (uint32_t)value;
    return 0;
}

int clinux_block_rotational(int fd, uint32_t *rotational) {
    unsigned short value = 0;
    if (ioctl(fd, BLKROTATIONAL, &value) != 0) return -errno;
    *rotational = value;
    return 0;
}

int clinux_block_discard(int fd, uint64_t offset, uint64_t length) {
    uint64_t range[2] = {offset, length};
    return ioctl(fd, BLKDISCARD, range) == 0 ? 0 : -errno;
}

int clinux_block_zeroout(int fd, uint64_t offset, uint64_t length) {
    uint64_t range[2] = {offset, length};
    return ioctl(fd, BLKZEROOUT, range) == 0 ? 0 : -errno;
}

int clinux_direct_io_alignment(int fd, uint32_t *memory_align, uint32_t *offset_align) {
    *memory_align = 0;
    *offset_align = 0;
#if defined(SYS_statx) && defined(STATX_DIOALIGN)
    struct statx stx;
    memset(&stx, 0, sizeof stx);
    if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0) return -errno;
    if (!(stx.stx_mask & STATX_DIOALIGN) || stx.stx_dio_offset_align == 0) return -EOPNOTSUPP;
    *memory_align = stx.stx_dio_mem_align;
    *offset_align = stx.stx_dio_offset_align;
    return 0;
#else
    (void)fd;
    return -ENOSYS;
#endif
}

uint32_t clinux_device_major(uint64_t device) { return major((dev_t)device); }
uint32_t clinux_device_minor(uint64_t device) { return minor((dev_t)device); }

int clinux_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd >= 0 ? fd : -errno;
}

/* The one 8-byte write (`writing`) or read of an eventfd counter that signal and
 * drain each make, retried on EINTR: 0 when all 8 bytes moved, -errno on failure,
 * -EIO on a short transfer. */
static int eventfd_transfer(int fd, uint64_t *value, int writing) {
    for (;;) {
        ssize_t n = writing ? write(fd, value, sizeof *value) : read(fd, value, sizeof *value);
        if (n == (ssize_t)sizeof *value) return 0;
        if (n < 0 && errno == EINTR) continue;
        return n < 0 ? -errno : -EIO;
    }
}

int clinux_eventfd_signal(int fd) {
    uint64_t one = 1;
    return eventfd_transfer(fd, &one, 1);
}

int clinux_eventfd_drain(int fd) {
    uint64_t value = 0;
    int rc = eventfd_transfer(fd, &value, 0);
    if (rc == -EAGAIN) return 0;
    return rc == 0 ? 1 : rc;
}

int clinux_eventfd_wait(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int n = poll(&p, 1, timeout_ms);
    if (n < 0) return -errno;
    return n > 0 ? 1 : 0;
}

/* ------------------------------------------------------------------ io_uring */

int clinux_uring_setup(clinux_uring *ring, uint32_t entries, uint32_t cq_entries, uint32_t flags) {
    memset(ring, 0, sizeof *ring);
    ring->fd = -1;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = flags;
    if (cq_entries) {
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
    }
    int fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (fd < 0) return -errno;

    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) {
        if (cq_size > sq_size) sq_size = cq_size;
        cq_size = sq_size;
    }
    void *sq_ptr = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (sq_ptr == MAP_FAILED) {
        int e = errno;
        close(fd);
        return -e;
    }
    void *cq_ptr = sq_ptr;
    if (!single) {
        cq_ptr = mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
        if (cq_ptr == MAP_FAILED) {
            int e = errno;
            munmap(sq_ptr, sq_size);
            close(fd);
            return -e;
        }
    }
    size_t sqes_size = p.sq_entries * sizeof(struct io_uring_sqe);
    void *sqes = mmap(NULL, sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) {
        int e = errno;
        if (!single) munmap(cq_ptr, cq_size);
        munmap(sq_ptr, sq_size);
        close(fd);
        return -e;
    }

    ring->fd = fd;
    ring->features = p.features;
    ring->sq_entries = p.sq_entries;
    ring->cq_entries = p.cq_entries;
    ring->sq_head = (uint32_t *)((char *)sq_ptr + p.sq_off.head);
    ring->sq_tail = (uint32_t *)((char *)sq_ptr + p.sq_off.tail);
    ring->sq_mask = *(uint32_t *)((char *)sq_ptr + p.sq_off.ring_mask);
    ring->sq_flags = (uint32_t *)((char *)sq_ptr + p.sq_off.flags);
    ring->sq_array = (uint32_t *)((char *)sq_ptr + p.sq_off.array);
    ring->sqes = sqes;
    ring->cq_head = (uint32_t *)((char *)cq_ptr + p.cq_off.head);
    ring->cq_tail = (uint32_t *)((char *)cq_ptr + p.cq_off.tail);
    ring->cq_mask = *(uint32_t *)((char *)cq_ptr + p.cq_off.ring_mask);
    ring->cqes = (char *)cq_ptr + p.cq_off.cqes;
    ring->sq_ring_ptr = sq_ptr;
    ring->sq_ring_size = sq_size;
    ring->cq_ring_ptr = single ? NULL : cq_ptr;
    ring->cq_ring_size = single ? 0 : cq_size;
    ring->sqes_size = sqes_size;
    /* Entries are submitted in order: the index array is the identity. */
    for (uint32_t i = 0; i < p.sq_entries; i++) ring->sq_array[i] = i;
    ring->sqe_tail = *ring->sq_tail;
    return 0;
}

void clinux_uring_teardown(clinux_uring *ring) {
    if (ring->fd < 0) return;
    munmap(ring->sqes, ring->sqes_size);
    if (ring->cq_ring_ptr) munmap(ring->cq_ring_ptr, ring->cq_ring_size);
    munmap(ring->sq_ring_ptr, ring->sq_ring_size);
    close(ring->fd);
    ring->fd = -1;
}

int clinux_uring_register_eventfd(clinux_uring *ring, int eventfd) {
    int32_t fd = eventfd;
    return syscall(__NR_io_uring_register, ring->fd, IORING_REGISTER_EVENTFD, &fd, 1) == 0 ? 0 : -errno;
}

uint32_t clinux_uring_sq_space(const clinux_uring *ring) {
    uint32_t head = __atomic_load_n(ring->sq_head, __ATOMIC_ACQUIRE);
    return ring->sq_entries - (ring->sqe_tail - head);
}

uint32_t clinux_uring_sq_pending(const clinux_uring *ring) {
    uint32_t head = __atomic_load_n(ring->sq_head, __ATOMIC_ACQUIRE);
    return ring->sqe_tail - head;
}

int clinux_uring_prep(clinux_uring *ring, uint8_t opcode, int fd, uint64_t addr, uint32_t len,
                      uint64_t offset, uint32_t op_flags, uint64_t user_data) {
    if (clinux_uring_sq_space(ring) == 0) return -EBUSY;
    uint32_t index = ring->sqe_tail & ring->sq_mask;
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)ring->sqes + index;
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = opcode;
    sqe->fd = fd;
    sqe->addr = addr;
    sqe->len = len;
    sqe->off = offset;
    sqe->rw_flags = (__kernel_rwf_t)op_flags; /* the same word as fsync_flags and cancel_flags */
    sqe->user_data = user_data;
    ring->sqe_tail++;
    return 0;
}

int clinux_uring_submit(clinux_uring *ring, uint32_t wait_nr) {
    /* Publish the prepared entries (their contents before the tail). */
    __atomic_store_n(ring->sq_tail, ring->sqe_tail, __ATOMIC_RELEASE);
    uint32_t to_submit = ring->sqe_tail - __atomic_load_n(ring->sq_head, __ATOMIC_ACQUIRE);
    if (to_submit == 0 && wait_nr == 0) return 0;
    unsigned flags = wait_nr ? IORING_ENTER_GETEVENTS : 0;
    int n = (int)syscall(__NR_io_uring_enter, ring->fd, to_submit, wait_nr, flags, NULL, 0);
    return n >= 0 ? n : -errno;
}

uint32_t clinux_uring_cq_ready(const clinux_uring *ring) {
    return __atomic_load_n(ring->cq_tail, __ATOMIC_ACQUIRE) - *ring->cq_head;
}

uint32_t clinux_uring_reap(clinux_uring *ring, clinux_cqe *out, uint32_t max) {
    uint32_t head = *ring->cq_head;
    uint32_t tail = __atomic_load_n(ring->cq_tail, __ATOMIC_ACQUIRE);
    uint32_t n = 0;
    while (head != tail && n < max) {
        const struct io_uring_cqe *cqe = (const struct io_uring_cqe *)ring->cqes + (head & ring->cq_mask);
        out[n].user_data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
        head++;
    }
    /* The slots may be reused once the kernel sees the new head. */
    __atomic_store_n(ring->cq_head, head, __ATOMIC_RELEASE);
    return n;
}

#endif /* __linux__ */

#ifdef __linux__
int clinux_malloc_tuning(int mmap_threshold, int trim_threshold) {
    int a = mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    int b = mallopt(M_TRIM_THRESHOLD, trim_threshold);
    return a == 1 && b == 1;
}
#endif
