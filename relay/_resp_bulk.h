/* One RESP bulk string written into a buffer the caller sized: $<length>\r\n
 * <data>\r\n.  Shared by relay._resp (a publish batch's records) and
 * consumers._stream_entries (XACK ids).  The length's digits are written by
 * hand: sprintf cost the catcher ~4 % of its instructions per record
 * (callgrind; README, "Performance"). */
#ifndef LOGRELAY_RESP_BULK_H
#define LOGRELAY_RESP_BULK_H

#include <stddef.h>
#include <string.h>

/* "$" + at most 20 digits + "\r\n", and the "\r\n" after the value */
#define RESP_BULK_OVERHEAD 25

static inline char *resp_put_bulk(char *p, const char *data, size_t size) {
    char digits[24];
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
