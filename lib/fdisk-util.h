/* What the host programs that edit a GPT with libfdisk share (pivot-mkdisk, the agent and
 * pivotctl): cleanup helpers and the partition types of Pivot's layout, spelled as libfdisk
 * reports them. The same GUIDs in on-disk form are GPT_TYPE_* in gpt.h. */
#pragma once

#include <libfdisk.h>

#define FDISK_TYPE_ESP "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
#define FDISK_TYPE_ROOT_X86_64 "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
#define FDISK_TYPE_LINUX_DATA "0fc63daf-8483-4772-8e79-3d69d8477de4"

static inline void fdisk_unref_contextp(struct fdisk_context **c) {
        if (*c)
                fdisk_unref_context(*c);
}

static inline void fdisk_unref_partitionp(struct fdisk_partition **p) {
        if (*p)
                fdisk_unref_partition(*p);
}
