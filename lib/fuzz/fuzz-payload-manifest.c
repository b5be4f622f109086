/* Fuzz target for the payload manifest and chunk table readers (lib/payload.c): every input is
 * decoded as the start of a payload file. Whatever decodes must be self-consistent: chunks tile
 * the data area without gaps, every image's chunks add up to its size.
 *
 * Built two ways (lib/module.mk): with clang -fsanitize=fuzzer as a real libFuzzer binary
 * (`make fuzz-payload-manifest`), and with lib/fuzz/fuzz-main.c as an ordinary test that runs
 * every file of lib/fuzz/corpus/payload-manifest/ under ASan+UBSan in `make unit`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct payload_manifest m;
        uint32_t manifest_size;

        if (payload_header_parse(data, size, &manifest_size) < 0)
                return 0;
        if (payload_manifest_parse(data, size, &m) < 0)
                return 0;
        if (m.manifest_size != manifest_size || m.table_offset != payload_prefix_size(manifest_size) ||
            m.data_offset != m.table_offset + (uint64_t)m.n_chunks * PAYLOAD_CHUNK_RECORD_SIZE ||
            m.payload_size != m.data_offset + m.data_size || m.data_size < m.n_chunks)
                abort();
        if (!version_valid(m.version) || !version_valid(m.min_version) ||
            strlen(m.verity_roothash) < 64)
                abort();
        /* The comparison must be total and antisymmetric on whatever versions get through. */
        int a = version_compare(m.version, m.min_version);
        int b = version_compare(m.min_version, m.version);
        if ((a > 0) != (b < 0) || (a == 0) != (b == 0))
                abort();
        /* The chunk table, when the input holds it. */
        if (size < m.data_offset ||
            payload_chunk_table_parse(&m, data + m.table_offset, m.data_offset - m.table_offset,
                                      &m.chunks) < 0) {
                payload_manifest_done(&m);
                return 0;
        }
        uint64_t offset = m.data_offset;
        for (uint32_t i = 0; i < m.n_chunks; i++) {
                if (m.chunks[i].offset != offset || m.chunks[i].image >= PAYLOAD_IMAGE_MAX ||
                    m.chunks[i].raw_size == 0 || m.chunks[i].raw_size > m.chunk_size)
                        abort();
                offset += m.chunks[i].size;
        }
        if (offset != m.payload_size)
                abort();
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++) {
                const struct payload_image *img = &m.images[t];
                uint64_t raw = 0;
                if (img->first_chunk + (uint64_t)img->n_chunks > m.n_chunks)
                        abort();
                for (uint32_t k = 0; k < img->n_chunks; k++) {
                        const struct payload_chunk *c = &m.chunks[img->first_chunk + k];
                        if (c->image != t || c->image_offset != raw)
                                abort();
                        raw += c->raw_size;
                }
                if (raw != img->size)
                        abort();
        }
        payload_manifest_done(&m);
        return 0;
}
