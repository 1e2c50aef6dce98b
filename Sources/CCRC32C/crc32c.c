// CRC-32C for the journal's record checksums. Debian ships no CRC-32C library (libcrc32c is
// not packaged), so this is the usual 20 lines: the SSE4.2 crc32 instruction when the CPU has
// it (checked once at run time), a byte-wise table otherwise. Same results either way; the
// test vector "123456789" -> 0xE3069283 is pinned in LifeboatCoreTests.
#include "ccrc32c.h"
#include <string.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#include <cpuid.h>
#endif

static uint32_t table[256];
static int ready; // 1: table built, 2: hardware

static void init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
    int hw = 0;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) hw = (c & bit_SSE4_2) != 0;
#endif
    __atomic_store_n(&ready, hw ? 2 : 1, __ATOMIC_RELEASE);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t hw_extend(uint32_t crc, const unsigned char *p, size_t len) {
    uint64_t c = crc;
    while (len >= 8) { uint64_t v; memcpy(&v, p, 8); c = _mm_crc32_u64(c, v); p += 8; len -= 8; }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t ccrc32c_extend(uint32_t crc, const void *data, size_t len) {
    int mode = __atomic_load_n(&ready, __ATOMIC_ACQUIRE);
    if (mode == 0) { init(); mode = ready; }
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__x86_64__)
    if (mode == 2) return ~hw_extend(crc, p, len);
#endif
    while (len--) crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}
