#pragma once
/* Arms the hardware watchdog for `seconds` and leaves it running: from here on a boot that
 * hangs is reset, until the booted system starts its own watchdog keeper. */
int watchdog_arm(unsigned seconds);
