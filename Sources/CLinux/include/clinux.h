#ifndef CLINUX_H
#define CLINUX_H
#include <spawn.h>
#include <stdint.h>

// Linux calls that Glibc declares only under _GNU_SOURCE, which a Swift-imported header must
// not define (it would clash with the Glibc module). The definitions live in clinux.c.

// sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE): start writeback of the range
// without waiting for it. Returns 0 or -1 with errno set.
int clinux_start_writeback(int fd, int64_t offset, int64_t nbytes);

// Brings the loopback interface up (a new network namespace starts with it down): the
// SIOCSIFFLAGS equivalent of `ip link set lo up`. Returns 0 or -1 with errno set.
int clinux_loopback_up(void);

// posix_spawn_file_actions_addchdir_np: the child starts in `path`.
int clinux_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

#endif
