// CRC-32C for the journal's record checksums. Debian ships no CRC-32C library (libcrc32c is
// not packaged), so this is the usual one: the SSE4.2 crc32 instruction when the CPU has it
// (checked once at run time), a byte-wise table otherwise. Same results either way; the test
// vector "123456789" -> 0xE3069283 is pinned in LifeboatCoreTests, and long buffers are checked
// there against the same CRC taken in small pieces (which never interleave).
//
// Long buffers run three independent crc32 chains over three adjacent blocks and combine them
// (Mark Adler's crc32c.c, zlib's crc32_combine idea): the instruction has a latency of three
// cycles and a throughput of one, so one chain uses a third of it. On 1 MiB journal writes the
// single chain was 16% of protect's CPU.
#include "ccrc32c.h"
#include <pthread.h>
#include <string.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#include <cpuid.h>
#endif

static uint32_t table[256];
static int ready; // 1: table built, 2: hardware
static pthread_once_t once = PTHREAD_ONCE_INIT;  // the tables are built exactly once

#define POLY 0x82F63B78u
#define LONG 8192
#define SHORT 256
// crc_long[k][b]: the raw CRC register `b << 8k` advanced over LONG zero bytes (SHORT: same).
static uint32_t crc_long[4][256], crc_short[4][256];

// GF(2) matrix (32 columns) times a vector.
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++) if (vec & 1) sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

// The operator that advances a raw CRC register over `len` zero bytes (len a power of two).
static void zeros_operator(uint32_t *even, size_t len) {
    uint32_t odd[32];
    odd[0] = POLY;  // one zero bit
    for (int n = 1; n < 32; n++) odd[n] = 1u << (n - 1);
    gf2_square(even, odd);  // two zero bits
    gf2_square(odd, even);  // four zero bits
    // Each square doubles: the first gives one zero byte in even, the next two in odd, ...
    do {
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        gf2_square(odd, even);
        len >>= 1;
    } while (len);
    memcpy(even, odd, sizeof odd);
}

static void zeros_tables(uint32_t zeros[4][256], size_t len) {
    uint32_t op[32];
    zeros_operator(op, len);
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 0; k < 4; k++) zeros[k][n] = gf2_times(op, n << (8 * k));
}

static inline uint32_t shift(uint32_t zeros[4][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static void init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
    zeros_tables(crc_long, LONG);
    zeros_tables(crc_short, SHORT);
    int hw = 0;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) hw = (c & bit_SSE4_2) != 0;
#endif
    __atomic_store_n(&ready, hw ? 2 : 1, __ATOMIC_RELEASE);
}

#if defined(__x86_64__)
// Three chains over blocks of `block` bytes: chain 0 carries the running CRC, 1 and 2 start
// from zero; then chain 0 is advanced over block 1 and joined with it, and again with block 2.
#define THREE_WAY(block, zeros)                                                   \
    while (len >= 3 * (block)) {                                                  \
        uint64_t c1 = 0, c2 = 0;                                                  \
        const unsigned char *end = p + (block);                                   \
        do {                                                                      \
            uint64_t v0, v1, v2;                                                  \
            memcpy(&v0, p, 8); memcpy(&v1, p + (block), 8); memcpy(&v2, p + 2 * (block), 8); \
            c0 = _mm_crc32_u64(c0, v0);                                           \
            c1 = _mm_crc32_u64(c1, v1);                                           \
            c2 = _mm_crc32_u64(c2, v2);                                           \
            p += 8;                                                               \
        } while (p < end);                                                        \
        c0 = shift(zeros, (uint32_t)c0) ^ (uint32_t)c1;                           \
        c0 = shift(zeros, (uint32_t)c0) ^ (uint32_t)c2;                           \
        p += 2 * (block);                                                         \
        len -= 3 * (block);                                                       \
    }

__attribute__((target("sse4.2")))
static uint32_t hw_extend(uint32_t crc, const unsigned char *p, size_t len) {
    uint64_t c0 = crc;
    THREE_WAY(LONG, crc_long)
    THREE_WAY(SHORT, crc_short)
    while (len >= 8) { uint64_t v; memcpy(&v, p, 8); c0 = _mm_crc32_u64(c0, v); p += 8; len -= 8; }
    uint32_t c32 = (uint32_t)c0;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t ccrc32c_extend(uint32_t crc, const void *data, size_t len) {
    int mode = __atomic_load_n(&ready, __ATOMIC_ACQUIRE);
    if (mode == 0) { pthread_once(&once, init); mode = __atomic_load_n(&ready, __ATOMIC_ACQUIRE); }
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__x86_64__)
    if (mode == 2) return ~hw_extend(crc, p, len);
#endif
    while (len--) crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}
