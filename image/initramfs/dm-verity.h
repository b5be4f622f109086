#pragma once

#include "cmdline.h"

/* Creates the read-only dm-verity device `name` over `data_dev` (hash tree in the same
 * device, after the data) and writes its node path, /dev/dm-N, into node. */
int dm_verity_create(const char *name, const char *data_dev, const struct boot_args *args,
                     char *node, size_t node_size);
