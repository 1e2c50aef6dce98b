// libzstd (Debian libzstd-dev) for Swift; only LifeboatCore imports it.
#ifndef CZSTD_SHIM_H
#define CZSTD_SHIM_H
#include <zstd.h>
// ZSTD_isError takes size_t and returns unsigned; re-exported so Swift reads it as Bool-like.
static inline int czstd_is_error(size_t code) { return ZSTD_isError(code) ? 1 : 0; }
#endif
