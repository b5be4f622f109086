/* A ring of bytes for chunks that arrive in order, are used out of order and give their room
 * back in the order they came: the install engine's received compressed chunks, each waiting
 * for a worker to decompress it. Each chunk takes one contiguous run of bytes right after the
 * one before, or at the start of the ring when it does not fit before the end (the bytes left
 * at the end wait for the next turn). Sized for four of the largest chunks (as the engine
 * makes it), a ring holds four of them, or about eleven of the usual size.
 *
 * Not thread-safe: the engine calls it under its lock. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define CHUNK_RING_MAX 16 /* chunks in the ring at once */

struct chunk_ring {
        size_t size;
        size_t head, tail; /* in use: [head, tail), or, wrapped, [head, end) and [0, tail) */
        unsigned first, n; /* the oldest entry still holding room; how many do */
        struct {
                size_t off, prev_tail;
                bool released;
        } e[CHUNK_RING_MAX];
};

void chunk_ring_init(struct chunk_ring *r, size_t size);

/* Room for len bytes (1 <= len <= size) after the newest entry: the new entry's index, below
 * CHUNK_RING_MAX, or -1 while there is no room. An empty ring always has room. */
int chunk_ring_reserve(struct chunk_ring *r, size_t len);

static inline size_t chunk_ring_offset(const struct chunk_ring *r, int idx) {
        return r->e[idx].off;
}

/* Entry idx is done with; the room of the oldest run of such entries comes back. */
void chunk_ring_release(struct chunk_ring *r, int idx);

/* Gives back the newest entry's room, unused (a transfer broke off while it filled). */
void chunk_ring_unreserve(struct chunk_ring *r);
