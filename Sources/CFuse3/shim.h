// libfuse3, low-level (inode based) API. FUSE_USE_VERSION must be set before the header.
#pragma once
#define FUSE_USE_VERSION 35
#include <stddef.h>
#include <malloc.h>
#include <fuse_lowlevel.h>

// Swift cannot call `fuse_session_loop_mt`: with FUSE_USE_VERSION 35 it is a function-like
// macro that picks the versioned symbol (`fuse_session_loop_mt_32`, taking the 3.2-era
// `struct fuse_loop_config { clone_fd; max_idle_threads; }`). This wrapper fills that struct
// so Swift passes plain integers and never depends on which symbol the macro names.
static inline int cfuse3_session_loop_mt(struct fuse_session *se, int clone_fd, unsigned max_idle_threads) {
    struct fuse_loop_config config;
    config.clone_fd = clone_fd;
    config.max_idle_threads = max_idle_threads;
    return fuse_session_loop_mt(se, &config);
}

// Answers a read with `size` bytes at `offset` of the open file `fd`, without copying them
// through the caller: libfuse splices them from the page cache into /dev/fuse when the kernel
// allows it (FUSE_CAP_SPLICE_WRITE), and reads them into its own buffer otherwise. Without
// FUSE_BUF_SPLICE_MOVE: moving would let the kernel steal the pages out of our cache file.
static inline int cfuse3_reply_fd(fuse_req_t req, int fd, off_t offset, size_t size) {
    struct fuse_bufvec buffer = FUSE_BUFVEC_INIT(size);
    buffer.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buffer.buf[0].fd = fd;
    buffer.buf[0].pos = offset;
    return fuse_reply_data(req, &buffer, (enum fuse_buf_copy_flags)0);
}

// glibc gives each thread that allocates a malloc arena of its own (up to 8 per core); the ~30
// threads of a mount then keep freed listing memory in many half-empty arenas. Two arenas keep
// the daemon's footprint close to what its caches really hold. (Swift imports neither
// `mallopt` nor the M_ARENA_MAX macro.)
//
// A fixed mmap threshold as well: glibc raises it after a large block is freed (up to 32 MiB),
// after which the 1 MiB write buffers of a bulk copy come from the arenas and stay resident
// once freed (RSS of a 60-photo rsync into incoming/: 82 MiB anonymous). At 256 KiB, larger
// blocks are always mapped and unmapped, and go back to the system when freed.
static inline void cfuse3_limit_malloc_arenas(void) {
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
}
