#ifndef CCRC32C_H
#define CCRC32C_H
#include <stddef.h>
#include <stdint.h>

// Extends a CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) over `len` bytes.
// Start with crc = 0; the pre/post inversion is done inside, so calls chain:
// ccrc32c_extend(ccrc32c_extend(0, a, n), b, m) == ccrc32c_extend(0, a‖b, n+m).
uint32_t ccrc32c_extend(uint32_t crc, const void *data, size_t len);

#endif
