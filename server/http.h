/* The HTTP front of pivot-server. */
#pragma once

#include <sys/socket.h>

struct server;
struct MHD_Daemon;

/* Connections open at once, in all and from one client address (the default of
 * --connections-per-ip): one client cannot hold all of them. */
#define HTTP_MAX_CONNECTIONS 4000
#define HTTP_CONNECTIONS_PER_IP 64

/* Starts serving on addr with a pool of threads, at most per_ip connections from one address
 * (0: no limit). NULL on failure. */
struct MHD_Daemon *http_start(struct server *srv, const struct sockaddr *addr, unsigned threads, unsigned per_ip);
void http_stop(struct MHD_Daemon *d);
