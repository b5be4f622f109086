/* The HTTP front of pivot-server. */
#pragma once

#include <sys/socket.h>

struct server;
struct MHD_Daemon;

/* Starts serving on addr with a pool of threads. NULL on failure. */
struct MHD_Daemon *http_start(struct server *srv, const struct sockaddr *addr, unsigned threads);
void http_stop(struct MHD_Daemon *d);
