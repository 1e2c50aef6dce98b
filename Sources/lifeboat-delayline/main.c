// lifeboat-delayline TUN DELAY_MS — a fixed network delay for test hosts, where the kernel has no
// netem (TestNetwork.delay): every packet the kernel routes into the TUN device is held DELAY_MS
// milliseconds, then written back into it, in order; the kernel then forwards it as if it had
// arrived on TUN. The router's policy routing sends what comes from the hosts' links into TUN and
// what comes out of TUN on to its destination. Dies with its parent (the test), so that it is
// never left behind.
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

enum { SLOTS = 32768, PACKET = 2048 };

static unsigned char scratch[PACKET];  // where a packet the full queue drops is read to

struct slot {
    uint64_t due_ns;
    int length;
    unsigned char bytes[PACKET];
};

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: lifeboat-delayline TUN DELAY_MS\n");
        return 64;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // A test runner may block signals in its threads; a child inherits that mask: unblock, so
    // that SIGTERM stops it.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    uint64_t delay = (uint64_t)strtoull(argv[2], NULL, 10) * 1000000u;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        perror("lifeboat-delayline: /dev/net/tun");
        return 71;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        perror("lifeboat-delayline: TUNSETIFF");
        return 71;
    }
    struct slot *queue = calloc(SLOTS, sizeof *queue);
    if (!queue) return 71;
    size_t head = 0, count = 0;
    unsigned long dropped = 0;
    printf("delaying %s by %s ms\n", argv[1], argv[2]);
    fflush(stdout);
    for (;;) {
        int timeout = -1;
        if (count > 0) {
            uint64_t due = queue[head].due_ns, t = now_ns();
            timeout = due > t ? (int)((due - t + 999999) / 1000000) : 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout) < 0 && errno != EINTR) return 74;
        // Take every packet waiting; a full queue drops (as a router's would).
        for (;;) {
            struct slot *s = &queue[(head + count) % SLOTS];
            ssize_t n = read(fd, count < SLOTS ? s->bytes : scratch, PACKET);
            if (n < 0) break;
            if (count == SLOTS) {
                dropped++;
                continue;
            }
            s->length = (int)n;
            s->due_ns = now_ns() + delay;
            count++;
        }
        uint64_t t = now_ns();
        while (count > 0 && queue[head].due_ns <= t) {
            (void)write(fd, queue[head].bytes, (size_t)queue[head].length);
            head = (head + 1) % SLOTS;
            count--;
        }
    }
}
