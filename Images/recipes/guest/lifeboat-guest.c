/*
 * lifeboat-guest: the application inside the sample machine (Images/recipes/sample-machine.sh).
 * Built static, it runs as the guest's only program:
 *
 *   lifeboat-guest probe DIR      check the ledger's invariant; print one LIFEBOAT-PROBE line
 *   lifeboat-guest workload DIR   append to the ledger with an fdatasync per record, forever
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

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "probe") == 0) return probe(argv[2]);
    if (argc == 3 && strcmp(argv[1], "workload") == 0) return workload(argv[2]);
    fprintf(stderr, "usage: lifeboat-guest probe|workload DIR\n");
    return 64;
}
