#ifndef CLINUX_H
#define CLINUX_H
#include <spawn.h>
#include <stdint.h>
#include <sys/uio.h>

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

// pidfd_open(2): a descriptor that polls readable when the process `pid` exits, so a parent
// can wait for a child with a timeout without sleeping in a loop. -1 with errno set.
int clinux_pidfd_open(int pid);

// The open-file-description lock commands of fcntl(2) (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW).
extern const int clinux_f_ofd_getlk;
extern const int clinux_f_ofd_setlk;
extern const int clinux_f_ofd_setlkw;

// lseek(2) whences for sparse files (SEEK_DATA, SEEK_HOLE).
extern const int clinux_seek_data;
extern const int clinux_seek_hole;

// open(2)'s O_DIRECT: reads and writes between the caller's buffer and the device, past the page
// cache (buffer, offset and length aligned to the logical block size).
extern const int clinux_o_direct;

// ioctl(dst, FICLONE, src): dst shares src's extents (a reflink copy, as `cp --reflink`).
// 0 or -1 with errno set (EOPNOTSUPP, EXDEV, EINVAL where the filesystem cannot).
int clinux_ficlone(int dst, int src);

// pthread_setname_np(pthread_self(), name) (glibc declares it under _GNU_SOURCE only). The name
// is cut to the kernel's 15 bytes; threads show under it in `top -H` and /proc/PID/task.
void clinux_name_this_thread(const char *name);

// Relaxed atomic loads and stores of a 32-bit word in plain memory (Swift's `Atomic` must be
// a stored property; these serve large arrays of counters, such as the activity log's).
static inline uint32_t clinux_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void clinux_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

// Acquire loads and release fetch-ors of a 64-bit word in plain memory: a failed-over disk's
// fill bitmap, read by every read without a lock and set after the primary holds the blocks.
static inline uint64_t clinux_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t clinux_fetch_or_release_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_or(p, v, __ATOMIC_RELEASE); }

// Copies the iovecs one after the other to `dst`, an address inside a shared file mapping, and
// returns 0; or -1 when touching the mapping raised SIGBUS (an I/O error reading a page in, a
// filesystem that refuses the page's write fault, a page past the end of a truncated file):
// the copy stops, the process lives on. The SIGBUS handler is installed on the first call and
// chains to the one it replaced for any other SIGBUS.
int clinux_copy_to_mapping(void *dst, const struct iovec *iov, int count);

// 1 when /dev/kvm runs a real-mode guest (a nested hypervisor may not: qemu then fails).
int clinux_kvm_runs_guests(void);

#endif
