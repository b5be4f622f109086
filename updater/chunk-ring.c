/* The ring of received chunks: see chunk-ring.h. */
#include "chunk-ring.h"

void chunk_ring_init(struct chunk_ring *r, size_t size) {
        *r = (struct chunk_ring){.size = size};
}

int chunk_ring_reserve(struct chunk_ring *r, size_t len) {
        size_t off;
        if (r->n == CHUNK_RING_MAX || len == 0 || len > r->size)
                return -1;
        if (r->n == 0)
                off = 0;
        else if (r->tail > r->head) { /* one run of bytes in use */
                if (r->tail + len <= r->size)
                        off = r->tail;
                else if (len < r->head)
                        off = 0; /* wraps */
                else
                        return -1;
        } else if (r->tail + len < r->head) /* wrapped: tail never catches up with head */
                off = r->tail;
        else
                return -1;
        int idx = (int)((r->first + r->n) % CHUNK_RING_MAX);
        r->n++;
        r->e[idx].off = off;
        r->e[idx].prev_tail = r->tail;
        r->e[idx].released = false;
        if (r->n == 1)
                r->head = off;
        r->tail = off + len;
        return idx;
}

void chunk_ring_release(struct chunk_ring *r, int idx) {
        r->e[idx].released = true;
        while (r->n > 0 && r->e[r->first].released) {
                r->first = (r->first + 1) % CHUNK_RING_MAX;
                r->n--;
        }
        if (r->n > 0)
                r->head = r->e[r->first].off;
        else
                r->head = r->tail = 0;
}

void chunk_ring_unreserve(struct chunk_ring *r) {
        int idx = (int)((r->first + r->n - 1) % CHUNK_RING_MAX);
        r->n--;
        r->tail = r->e[idx].prev_tail;
        if (r->n == 0)
                r->head = r->tail = 0;
}
