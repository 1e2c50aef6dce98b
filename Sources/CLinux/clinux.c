#define _GNU_SOURCE
#include "clinux.h"
#include <fcntl.h>

int clinux_start_writeback(int fd, int64_t offset, int64_t nbytes) {
    return sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE);
}
