// The C baseline of Harness/bench: a minimal libfuse 3 low-level server that exposes one
// image file as MOUNT/disk.img, with the same choices as `lifeboat protect` (multithreaded
// loop with clone_fd, 1 MiB max_write, reads answered by splice from the file descriptor,
// no writeback cache, fsync = fdatasync of the file) and nothing else: no journal, no digest.
// By default it keeps the kernel's page cache (keep_cache: protect's choice until decision
// 0014, and the baseline issue 2 and 11 set their targets against).
// Build: gcc -O2 c_one_file.c $(pkg-config --cflags --libs fuse3) -o c_one_file
// Run:   ./c_one_file IMAGE MOUNTPOINT [--direct-io]   (foreground; fusermount3 -u MOUNTPOINT stops it)
// --direct-io answers every open with FOPEN_DIRECT_IO instead of keep_cache, as `lifeboat
// protect` does since decision 0014: the like-for-like baseline for that choice.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int image_fd;
static int direct_io;
static off_t image_size;

static void fill(struct stat *st, fuse_ino_t ino) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    if (ino == 1) { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; }
    else { st->st_mode = S_IFREG | 0644; st->st_nlink = 1; st->st_size = image_size; }
}

static void op_init(void *u, struct fuse_conn_info *c) {
    (void)u;
    if (c->capable & FUSE_CAP_SPLICE_WRITE) c->want |= FUSE_CAP_SPLICE_WRITE;
    if (c->capable & FUSE_CAP_SPLICE_MOVE) c->want |= FUSE_CAP_SPLICE_MOVE;
    c->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    c->max_write = 1 << 20;
    c->max_readahead = 1 << 20;
}

static void op_lookup(fuse_req_t r, fuse_ino_t parent, const char *name) {
    if (parent != 1 || strcmp(name, "disk.img") != 0) { fuse_reply_err(r, ENOENT); return; }
    struct fuse_entry_param e = { .ino = 2, .generation = 1, .attr_timeout = 3600, .entry_timeout = 3600 };
    fill(&e.attr, 2);
    fuse_reply_entry(r, &e);
}

static void op_getattr(fuse_req_t r, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    struct stat st;
    fill(&st, ino);
    fuse_reply_attr(r, &st, 3600);
}

static void op_open(fuse_req_t r, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (ino != 2) { fuse_reply_err(r, EISDIR); return; }
    if (direct_io) fi->direct_io = 1; else fi->keep_cache = 1;
    fuse_reply_open(r, fi);
}

static void op_read(fuse_req_t r, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    size_t len = off >= image_size ? 0 : (size_t)(image_size - off < (off_t)size ? image_size - off : (off_t)size);
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(len);
    buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    buf.buf[0].fd = image_fd;
    buf.buf[0].pos = off;
    fuse_reply_data(r, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void op_write(fuse_req_t r, fuse_ino_t ino, const char *data, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    if (off + (off_t)size > image_size) { fuse_reply_err(r, ENOSPC); return; }
    ssize_t n = pwrite(image_fd, data, size, off);
    if (n < 0) fuse_reply_err(r, errno); else fuse_reply_write(r, (size_t)n);
}

static void op_fsync(fuse_req_t r, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
    (void)ino; (void)datasync; (void)fi;
    fuse_reply_err(r, fdatasync(image_fd) == 0 ? 0 : errno);
}

static void op_flush(fuse_req_t r, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino; (void)fi; fuse_reply_err(r, 0); }

static void op_readdir(fuse_req_t r, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    if (ino != 1) { fuse_reply_err(r, ENOTDIR); return; }
    char buf[512];
    size_t used = 0;
    const char *names[] = { ".", "..", "disk.img" };
    for (off_t i = off; i < 3; i++) {
        struct stat st;
        fill(&st, i == 2 ? 2 : 1);
        size_t need = fuse_add_direntry(r, buf + used, sizeof buf - used, names[i], &st, i + 1);
        if (need > sizeof buf - used || used + need > size) break;
        used += need;
    }
    fuse_reply_buf(r, buf, used);
}

int main(int argc, char **argv) {
    direct_io = argc == 4 && strcmp(argv[3], "--direct-io") == 0;
    if (argc != 3 && !direct_io) { fprintf(stderr, "usage: %s IMAGE MOUNTPOINT [--direct-io]\n", argv[0]); return 64; }
    image_fd = open(argv[1], O_RDWR);
    if (image_fd < 0) { perror(argv[1]); return 66; }
    image_size = lseek(image_fd, 0, SEEK_END);
    struct fuse_lowlevel_ops ops = {
        .init = op_init, .lookup = op_lookup, .getattr = op_getattr, .open = op_open, .read = op_read,
        .write = op_write, .fsync = op_fsync, .flush = op_flush, .readdir = op_readdir,
    };
    char *args[] = { argv[0], "-o", "fsname=cbaseline,default_permissions" };
    struct fuse_args fa = FUSE_ARGS_INIT(3, args);
    struct fuse_session *se = fuse_session_new(&fa, &ops, sizeof ops, NULL);
    if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[2]) != 0) return 1;
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, 16);
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return rc < 0 ? 1 : 0;
}
