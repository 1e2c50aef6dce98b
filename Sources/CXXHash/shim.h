// libxxhash (Debian libxxhash-dev): XXH3-128, the per-block source digest hash.
#ifndef CXXHASH_SHIM_H
#define CXXHASH_SHIM_H
#include <xxhash.h>
#endif
