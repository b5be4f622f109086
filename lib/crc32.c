/* CRC-32 (IEEE 802.3), table-driven. The table is built by the preprocessor from the
 * polynomial so there is neither a block of magic numbers to trust nor a run-time
 * initialisation to race on when a threaded program calls this for the first time. */
#include "crc32.h"

#define CRC32_POLY 0xEDB88320u

/* One shift of the reflected CRC register; the mask is all ones when the low bit is set. */
#define CRC_STEP(c) (((c) >> 1) ^ (CRC32_POLY & (0u - ((c) & 1u))))
#define CRC_BYTE(c)                                                                                \
        CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP((uint32_t)(c)))))))))
#define CRC_T4(n) CRC_BYTE(n), CRC_BYTE((n) + 1), CRC_BYTE((n) + 2), CRC_BYTE((n) + 3)
#define CRC_T16(n) CRC_T4(n), CRC_T4((n) + 4), CRC_T4((n) + 8), CRC_T4((n) + 12)
#define CRC_T64(n) CRC_T16(n), CRC_T16((n) + 16), CRC_T16((n) + 32), CRC_T16((n) + 48)

static const uint32_t crc32_table[256] = {
        CRC_T64(0),
        CRC_T64(64),
        CRC_T64(128),
        CRC_T64(192),
};

uint32_t crc32_ieee(uint32_t crc, const void *buf, size_t len) {
        const uint8_t *p = buf;

        crc = ~crc;
        while (len--)
                crc = crc32_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
        return ~crc;
}
