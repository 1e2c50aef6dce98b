#define _GNU_SOURCE
#include "clinux.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <net/if.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int clinux_start_writeback(int fd, int64_t offset, int64_t nbytes) {
    return sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE);
}

int clinux_loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return rc;
}

int clinux_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int clinux_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

const int clinux_f_ofd_getlk = F_OFD_GETLK;
const int clinux_f_ofd_setlk = F_OFD_SETLK;
const int clinux_f_ofd_setlkw = F_OFD_SETLKW;
const int clinux_seek_data = SEEK_DATA;
const int clinux_seek_hole = SEEK_HOLE;
const int clinux_o_direct = O_DIRECT;

int clinux_ficlone(int dst, int src) { return ioctl(dst, FICLONE, src); }

void clinux_name_this_thread(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof cut - 1);
    cut[sizeof cut - 1] = 0;
    pthread_setname_np(pthread_self(), cut);
}

/* Whether /dev/kvm really runs a guest. A nested hypervisor without "unrestricted guest"
 * emulates real and virtual-8086 mode in software and may fail there (qemu then stops with
 * "KVM internal error ... emulation failure" in the boot loader). Two programs, each writing
 * 'K' to I/O port 0x10: one in real mode returning through IRET (what SeaBIOS does on every
 * interrupt), one in 32-bit protected mode entering virtual-8086 mode by IRET (what SYSLINUX's
 * calls into the BIOS do). */
#include <linux/kvm.h>
#include <sys/mman.h>
static int kvm_program_writes_k(int kvm, int protected_mode) {
    int ok = 0, vm = -1, cpu = -1, run_size = 0;
    unsigned char *mem = MAP_FAILED;
    struct kvm_run *run = MAP_FAILED;
    if ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0) goto out;
    mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) goto out;
    static const unsigned char real_mode[] = {
        0x9c, 0x0e, 0x68, 0x06, 0x10,   /* pushf; push cs; push 0x1006 */
        0xcf,                           /* iret (to the next instruction) */
        0xb0, 0x4b, 0xe6, 0x10, 0xf4,   /* mov al,'K'; out 0x10,al; hlt */
    };
    static const unsigned char to_vm86[] = {
        0x6a, 0x00, 0x6a, 0x00, 0x6a, 0x00, 0x6a, 0x00,  /* push 0 (gs, fs, ds, es) */
        0x6a, 0x00,                                      /* push 0 (ss) */
        0x68, 0xf0, 0x0f, 0x00, 0x00,                    /* push 0x0ff0 (sp) */
        0x68, 0x02, 0x30, 0x02, 0x00,                    /* push eflags: VM, IOPL 3 */
        0x68, 0x00, 0x01, 0x00, 0x00,                    /* push 0x0100 (cs: base 0x1000) */
        0x68, 0x1f, 0x00, 0x00, 0x00,                    /* push 0x1f (ip: below) */
        0xcf,                                            /* iret */
        0xb0, 0x4b, 0xe6, 0x10, 0xf4,                    /* vm86: mov al,'K'; out 0x10,al; hlt */
    };
    if (protected_mode) memcpy(mem, to_vm86, sizeof to_vm86); else memcpy(mem, real_mode, sizeof real_mode);
    /* A flat GDT at 0x1800: null, code (0x08), data (0x10). */
    uint64_t gdt[3] = { 0, 0x00cf9b000000ffffULL, 0x00cf93000000ffffULL };
    memcpy(mem + 0x800, gdt, sizeof gdt);
    struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000, .userspace_addr = (uint64_t)(uintptr_t)mem };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) goto out;
    if ((cpu = ioctl(vm, KVM_CREATE_VCPU, 0)) < 0) goto out;
    if ((run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)) <= 0) goto out;
    run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    if (run == MAP_FAILED) goto out;
    struct kvm_sregs sregs;
    if (ioctl(cpu, KVM_GET_SREGS, &sregs) < 0) goto out;
    if (protected_mode) {
        struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb, .present = 1, .dpl = 0, .db = 1, .s = 1, .g = 1 };
        struct kvm_segment data = code;
        data.selector = 0x10;
        data.type = 0x3;
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
        sregs.gdt.base = 0x1800;
        sregs.gdt.limit = sizeof gdt - 1;
        sregs.cr0 |= 1;
    } else {
        sregs.cs.base = 0; sregs.cs.selector = 0;
        sregs.ss.base = 0; sregs.ss.selector = 0;
    }
    if (ioctl(cpu, KVM_SET_SREGS, &sregs) < 0) goto out;
    struct kvm_regs regs = { .rip = 0x1000, .rsp = 0x1f00, .rflags = 0x2 };
    if (ioctl(cpu, KVM_SET_REGS, &regs) < 0) goto out;
    for (int i = 0; i < 4; i++) {
        if (ioctl(cpu, KVM_RUN, 0) < 0) break;
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x10
            && ((unsigned char *)run)[run->io.data_offset] == 0x4b) { ok = 1; break; }
        if (run->exit_reason != KVM_EXIT_IO) break;
    }
out:
    if (run != MAP_FAILED) munmap(run, (size_t)run_size);
    if (cpu >= 0) close(cpu);
    if (mem != MAP_FAILED) munmap(mem, 0x1000);
    if (vm >= 0) close(vm);
    return ok;
}

int clinux_kvm_runs_guests(void) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return 0;
    int ok = ioctl(kvm, KVM_GET_API_VERSION, 0) == 12 && kvm_program_writes_k(kvm, 0) && kvm_program_writes_k(kvm, 1);
    close(kvm);
    return ok;
}

// The guarded copy of clinux_copy_to_mapping: a thread's copy in progress registers where
// to jump back to; the handler jumps there for a SIGBUS raised during it (SA_NODEFER, so the
// signal is not left blocked by the jump), and otherwise hands the signal on.
static __thread sigjmp_buf *volatile mapping_copy_in_progress;
static struct sigaction sigbus_before;
static pthread_once_t sigbus_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    sigjmp_buf *back = mapping_copy_in_progress;
    if (back != NULL && info->si_code > 0) {
        mapping_copy_in_progress = NULL;
        siglongjmp(*back, 1);
    }
    if (sigbus_before.sa_flags & SA_SIGINFO) {
        if (sigbus_before.sa_sigaction != NULL) { sigbus_before.sa_sigaction(sig, info, context); return; }
    } else if (sigbus_before.sa_handler != SIG_DFL && sigbus_before.sa_handler != SIG_IGN) {
        sigbus_before.sa_handler(sig);
        return;
    }
    // Default action: restore it; a fault re-executes and terminates, a sent signal is re-raised.
    signal(SIGBUS, SIG_DFL);
    if (info->si_code <= 0) raise(SIGBUS);
}

static void install_sigbus_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &sigbus_before);
}

int clinux_copy_to_mapping(void *dst, const struct iovec *iov, int count) {
    pthread_once(&sigbus_once, install_sigbus_handler);
    sigjmp_buf back;
    if (sigsetjmp(back, 0) != 0) return -1;
    mapping_copy_in_progress = &back;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);  // registered before the first byte is copied
    char *at = dst;
    for (int i = 0; i < count; i++) {
        memcpy(at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    mapping_copy_in_progress = NULL;
    return 0;
}
