// libfuse 3 low-level API for Swift. FUSE_USE_VERSION is defined here and nowhere else.
// _FILE_OFFSET_BITS is deliberately NOT defined: on 64-bit Linux off_t is already 64-bit and
// defining it makes this module clash with Glibc's ('flock' has different definitions).
#ifndef CFUSE3_SHIM_H
#define CFUSE3_SHIM_H

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <stdlib.h>
#include <string.h>

// fuse_session_new is a plain function in 3.14 but needs a fuse_args built from argv;
// FUSE_ARGS_INIT does not import into Swift, so the struct is built here.
static inline struct fuse_session *cfuse_session_new(int argc, char **argv,
                                                     const struct fuse_lowlevel_ops *ops,
                                                     void *userdata) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_session *se = fuse_session_new(&args, ops, sizeof(*ops), userdata);
    fuse_opt_free_args(&args);
    return se;
}

// fuse_session_loop_mt is a versioned macro in 3.14 (fuse_session_loop_mt_312), which Swift
// cannot call; this wrapper also owns the loop configuration's lifetime.
static inline int cfuse_session_loop_mt(struct fuse_session *se, unsigned max_threads) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) return -1;
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

// Replies with `size` bytes read by the kernel straight from `fd` at `offset` (splice when the
// kernel allows it): no copy through our memory. FUSE_BUFVEC_INIT does not import.
static inline int cfuse_reply_fd(fuse_req_t req, int fd, off_t offset, size_t size) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd;
    buf.buf[0].pos = offset;
    return fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

#endif
