/*
 * lifeboat-guest: the application inside the sample machine (Images/recipes/sample-machine.sh).
 * Built static, it runs as the guest's only program:
 *
 *   lifeboat-guest probe DIR      check the ledger's invariant; print one LIFEBOAT-PROBE line
 *   lifeboat-guest workload DIR   append to the ledger with an fdatasync per record, forever
 *   lifeboat-guest agent          answer the qemu guest agent's freeze and thaw (see agent())
 *
 * The ledger (DIR/ledger) is a run of 4 KiB records. Record n (from 1) sits at (n-1)*4096 and
 * holds: "LBLEDGR1" (8 bytes), n (u64 LE), then bytes 16..4087 filled from n (see fill()),
 * then an FNV-1a 64 of bytes 0..4087 (u64 LE). DIR/committed holds a decimal count C, written
 * atomically (temporary file, fsync, rename, fsync of DIR) after every 16th record's fdatasync.
 *
 * The invariant a crash-consistent disk keeps: the ledger starts with at least C valid records
 * numbered 1, 2, 3, ... and after the first invalid record nothing valid follows (a torn tail
 * of records not yet synced is allowed; a hole or a record out of place is not). The probe
 * prints "LIFEBOAT-PROBE ok records=N committed=C" or "LIFEBOAT-PROBE FAILED: why" and exits
 * 0 or 1. The workload first drops a torn tail, then appends records N+1, N+2, ... until the
 * ledger holds MAX_RECORDS, printing "LIFEBOAT-WORKLOAD n" every 256 records.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECORD 4096
#define MAX_RECORDS 12288 /* 48 MiB */
#define COMMIT_EVERY 16

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static void fill(unsigned char *r, uint64_t n) {
    memcpy(r, "LBLEDGR1", 8);
    put64(r + 8, n);
    uint64_t x = n * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 16; i < RECORD - 8; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; r[i] = (unsigned char)x; }
    put64(r + RECORD - 8, fnv1a(r, RECORD - 8));
}

/* Whether r is a whole, valid record numbered n. */
static int valid(const unsigned char *r, uint64_t n) {
    return memcmp(r, "LBLEDGR1", 8) == 0 && get64(r + 8) == n && get64(r + RECORD - 8) == fnv1a(r, RECORD - 8);
}

static int looks_like_record(const unsigned char *r) {
    return memcmp(r, "LBLEDGR1", 8) == 0 && get64(r + RECORD - 8) == fnv1a(r, RECORD - 8);
}

static long read_committed(const char *dir) {
    char path[4096], text[32] = {0};
    snprintf(path, sizeof path, "%s/committed", dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return -1;
    char *end;
    long c = strtol(text, &end, 10);
    return (end == text || c < 0) ? -1 : c;
}

/* Counts the valid prefix; *bad is set when a valid record lies after an invalid one. */
static long scan(int fd, long *tail_records, int *bad, long *bad_at) {
    unsigned char r[RECORD];
    long n = 0, total = 0;
    int in_tail = 0;
    *bad = 0;
    for (;;) {
        ssize_t got = pread(fd, r, RECORD, (off_t)total * RECORD);
        if (got <= 0) break;
        if (got < RECORD) memset(r + got, 0, RECORD - got);
        total++;
        if (!in_tail && valid(r, (uint64_t)n + 1)) { n++; continue; }
        in_tail = 1;
        if (looks_like_record(r)) { *bad = 1; *bad_at = total; break; }
    }
    *tail_records = total - n;
    return n;
}

static int probe(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ledger", dir);
    long committed = read_committed(dir);
    if (committed < 0) { printf("LIFEBOAT-PROBE FAILED: %s/committed is unreadable or not a number\n", dir); return 1; }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT && committed == 0) { printf("LIFEBOAT-PROBE ok records=0 committed=0\n"); return 0; }
        printf("LIFEBOAT-PROBE FAILED: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    long tail, bad_at = 0;
    int bad;
    long n = scan(fd, &tail, &bad, &bad_at);
    close(fd);
    if (bad) { printf("LIFEBOAT-PROBE FAILED: a valid record at slot %ld follows an invalid one (records=%ld)\n", bad_at, n); return 1; }
    if (n < committed) { printf("LIFEBOAT-PROBE FAILED: %ld valid records, but %ld were committed\n", n, committed); return 1; }
    printf("LIFEBOAT-PROBE ok records=%ld committed=%ld torn=%ld\n", n, committed, tail);
    return 0;
}

static int commit(const char *dir, long count) {
    char tmp[4096], path[4096], text[32];
    snprintf(tmp, sizeof tmp, "%s/committed.tmp", dir);
    snprintf(path, sizeof path, "%s/committed", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int len = snprintf(text, sizeof text, "%ld\n", count);
    if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) { close(fd); return -1; }
    close(fd);
    if (rename(tmp, path) != 0) return -1;
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    if (d < 0) return -1;
    int r = fsync(d);
    close(d);
    return r;
}

static int workload(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ledger", dir);
    mkdir(dir, 0755);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) { printf("LIFEBOAT-WORKLOAD FAILED: cannot open %s: %s\n", path, strerror(errno)); return 1; }
    long tail, bad_at;
    int bad;
    long n = scan(fd, &tail, &bad, &bad_at);
    if (ftruncate(fd, (off_t)n * RECORD) != 0 || fsync(fd) != 0) { printf("LIFEBOAT-WORKLOAD FAILED: %s\n", strerror(errno)); return 1; }
    printf("LIFEBOAT-WORKLOAD started at record %ld\n", n + 1);
    fflush(stdout);
    unsigned char r[RECORD];
    while (n < MAX_RECORDS) {
        fill(r, (uint64_t)n + 1);
        if (pwrite(fd, r, RECORD, (off_t)n * RECORD) != RECORD || fdatasync(fd) != 0) {
            printf("LIFEBOAT-WORKLOAD FAILED: record %ld: %s\n", n + 1, strerror(errno));
            return 1;
        }
        n++;
        if (n % COMMIT_EVERY == 0 && commit(dir, n) != 0) { printf("LIFEBOAT-WORKLOAD FAILED: committed: %s\n", strerror(errno)); return 1; }
        if (n % 256 == 0) { printf("LIFEBOAT-WORKLOAD %ld\n", n); fflush(stdout); }
    }
    printf("LIFEBOAT-WORKLOAD full at %ld records\n", n);
    return 0;
}

/* The virtio-serial port named org.qemu.guest_agent.0 (no udev here to make the symlink). */
static int open_agent_port(void) {
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d) return -1;
    struct dirent *e;
    int fd = -1;
    while (fd < 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[512], name[128] = {0};
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        int n = open(path, O_RDONLY);
        if (n < 0) continue;
        ssize_t got = read(n, name, sizeof name - 1);
        close(n);
        if (got > 0 && strncmp(name, "org.qemu.guest_agent.0", 22) == 0) {
            snprintf(path, sizeof path, "/dev/%s", e->d_name);
            fd = open(path, O_RDWR | O_NOCTTY);
        }
    }
    closedir(d);
    return fd;
}

static void reply(int port, const char *text) {
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(port, text, len);
        if (n <= 0) return;
        text += n;
        len -= (size_t)n;
    }
}

/* The text value of "key": "value" in a JSON object (no escapes needed for our commands). */
static int json_field(const char *obj, const char *key, char *out, size_t size, int numeric) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = strstr(obj, pattern);
    if (!p) return 0;
    p += strlen(pattern);
    while (*p == ' ' || *p == ':' || *p == '\t') p++;
    size_t n = 0;
    if (numeric) {
        while ((*p == '-' || (*p >= '0' && *p <= '9')) && n + 1 < size) out[n++] = *p++;
    } else {
        if (*p++ != '"') return 0;
        while (*p && *p != '"' && n + 1 < size) out[n++] = *p++;
    }
    out[n] = 0;
    return n > 0;
}

/*
 * A subset of the qemu guest agent's protocol (QGA, JSON objects over the virtio-serial port
 * org.qemu.guest_agent.0), so that the host side is the same as for a real guest with
 * qemu-guest-agent: guest-sync-delimited, guest-sync, guest-ping, guest-fsfreeze-freeze,
 * guest-fsfreeze-thaw, guest-fsfreeze-status. Freezing is FIFREEZE on /, the one filesystem:
 * ext4 then flushes its journal and marks itself clean, so a point taken while frozen needs
 * no journal replay.
 */
static int agent(void) {
    int port = open_agent_port();
    if (port < 0) return 0; /* no agent channel: a machine started without one */
    int frozen = 0;
    char obj[4096];
    size_t len = 0;
    int depth = 0, in_string = 0, escaped = 0;
    for (;;) {
        char c;
        ssize_t n = read(port, &c, 1);
        if (n <= 0) { if (n < 0 && errno == EINTR) continue; usleep(100000); continue; } /* host not connected */
        if (depth == 0 && c != '{') continue;
        if (len + 1 < sizeof obj) obj[len++] = c;
        if (in_string) {
            if (escaped) escaped = 0; else if (c == '\\') escaped = 1; else if (c == '"') in_string = 0;
            continue;
        }
        if (c == '"') in_string = 1;
        else if (c == '{') depth++;
        else if (c == '}' && --depth == 0) {
            obj[len] = 0;
            len = 0;
            char cmd[64] = {0}, id[32] = {0}, out[256];
            json_field(obj, "execute", cmd, sizeof cmd, 0);
            if (strcmp(cmd, "guest-sync-delimited") == 0 || strcmp(cmd, "guest-sync") == 0) {
                json_field(obj, "id", id, sizeof id, 1);
                if (cmd[10] == '-') reply(port, "\xff");
                snprintf(out, sizeof out, "{\"return\": %s}\n", id[0] ? id : "0");
            } else if (strcmp(cmd, "guest-ping") == 0) {
                snprintf(out, sizeof out, "{\"return\": {}}\n");
            } else if (strcmp(cmd, "guest-fsfreeze-status") == 0) {
                snprintf(out, sizeof out, "{\"return\": \"%s\"}\n", frozen ? "frozen" : "thawed");
            } else if (strcmp(cmd, "guest-fsfreeze-freeze") == 0) {
                int fd = open("/", O_RDONLY | O_DIRECTORY);
                if (fd >= 0 && (frozen || ioctl(fd, FIFREEZE, 0) == 0)) {
                    frozen = 1;
                    snprintf(out, sizeof out, "{\"return\": 1}\n");
                } else {
                    snprintf(out, sizeof out, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"FIFREEZE /: %s\"}}\n", strerror(errno));
                }
                if (fd >= 0) close(fd);
            } else if (strcmp(cmd, "guest-fsfreeze-thaw") == 0) {
                int fd = open("/", O_RDONLY | O_DIRECTORY);
                int thawed = frozen && fd >= 0 && ioctl(fd, FITHAW, 0) == 0;
                if (fd >= 0) close(fd);
                frozen = 0;
                snprintf(out, sizeof out, "{\"return\": %d}\n", thawed);
            } else {
                snprintf(out, sizeof out, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command %s has not been found\"}}\n", cmd);
            }
            reply(port, out);
        }
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "probe") == 0) return probe(argv[2]);
    if (argc == 3 && strcmp(argv[1], "workload") == 0) return workload(argv[2]);
    if (argc == 2 && strcmp(argv[1], "agent") == 0) return agent();
    fprintf(stderr, "usage: lifeboat-guest probe|workload DIR, or lifeboat-guest agent\n");
    return 64;
}
