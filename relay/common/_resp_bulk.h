/* One RESP bulk string written into a buffer the caller sized: $<length>\r\n
 * <data>\r\n.  Shared by relay.publish._packing (a publish batch's records) and
 * consumers._read_replies (XACK ids).  The length's digits are written by
 * hand: sprintf cost the catcher a few percent of its instructions per
 * record (valgrind --tool=callgrind over python -m bench.ingest). */
#ifndef LOGRELAY_RESP_BULK_H
#define LOGRELAY_RESP_BULK_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

/* The most decimal digits a size_t has: 20, for 2**64 - 1. */
#define RESP_SIZE_DIGITS 20
_Static_assert(SIZE_MAX <= 18446744073709551615ull, "a size_t of more than 20 digits: raise RESP_SIZE_DIGITS");

/* "$" + at most RESP_SIZE_DIGITS digits + "\r\n", and the "\r\n" after the
 * value: what callers add to each value's size when sizing the buffer. */
#define RESP_BULK_OVERHEAD 25
_Static_assert(RESP_BULK_OVERHEAD >= 1 + RESP_SIZE_DIGITS + 2 + 2, "RESP_BULK_OVERHEAD is below the worst case");

/* Writes exactly 1 + digits + 2 + size + 2 bytes at p (no terminating NUL),
 * at most size + RESP_BULK_OVERHEAD; returns the position past them. */
static inline char *resp_put_bulk(char *p, const char *data, size_t size) {
    char digits[RESP_SIZE_DIGITS]; /* written backwards, no NUL */
    int n = 0;
    size_t rest = size;
    do {
        digits[n++] = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest);
    *p++ = '$';
    while (n) *p++ = digits[--n];
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, data, size);
    p += size;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

#endif
