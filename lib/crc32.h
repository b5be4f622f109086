/* CRC-32 as GPT (and zlib, Ethernet, PNG) define it: reflected polynomial 0xEDB88320, initial
 * value and final XOR 0xFFFFFFFF. No libc: this is compiled into the UEFI boot selector too.
 *
 *   uint32_t c = crc32_ieee(0, buf, n);            // one buffer
 *   c = crc32_ieee(crc32_ieee(0, a, na), b, nb);   // same as over a and b back to back */
#pragma once

#include <stddef.h>
#include <stdint.h>

uint32_t crc32_ieee(uint32_t crc, const void *buf, size_t len);
