#include "watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

int watchdog_arm(unsigned seconds) {
        int timeout = (int)seconds;
        _cleanup_close_ int fd = -1;

        /* The driver registers asynchronously after its module loads. */
        for (int i = 0; i < 50 && fd < 0; i++) {
                fd = open("/dev/watchdog", O_WRONLY | O_CLOEXEC);
                if (fd < 0)
                        usleep(100 * 1000);
        }
        if (fd < 0)
                return log_error_errno(negative_errno(), "No watchdog device: %m");
        if (ioctl(fd, WDIOC_SETTIMEOUT, &timeout) < 0)
                return log_error_errno(negative_errno(), "Cannot set watchdog timeout: %m");
        if (ioctl(fd, WDIOC_KEEPALIVE, 0) < 0)
                return log_error_errno(negative_errno(), "Cannot ping watchdog: %m");
        /* Closing without the magic 'V' leaves it running: that is the point. */
        log_info("watchdog armed: %d s", timeout);
        return 0;
}
