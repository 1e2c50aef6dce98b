#ifndef CLINUX_H
#define CLINUX_H
#include <stdint.h>

// Linux calls that Glibc declares only under _GNU_SOURCE, which a Swift-imported header must
// not define (it would clash with the Glibc module). The definitions live in clinux.c.

// sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE): start writeback of the range
// without waiting for it. Returns 0 or -1 with errno set.
int clinux_start_writeback(int fd, int64_t offset, int64_t nbytes);

#endif
