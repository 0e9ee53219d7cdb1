/*
 * server — ingress's HTTP server and its link to the router.
 *
 * One thread: libmicrohttpd runs in external-epoll mode and its epoll fd
 * sits in the same zmq_poll as the router's DEALER socket. A webhook is
 * parsed and checked, sent to the router, and its connection suspended
 * until the router's ACK (200) or the ack timeout (503) resumes it, so
 * that 200 always means "committed to LMDB" (DESIGN invariant 1).
 */
#ifndef BATON_SERVER_H
#define BATON_SERVER_H

#include <signal.h>

#include "config.h"

/** Run until *stop becomes non-zero. Returns 0 on a clean stop, -1 on a startup error (logged). */
int server_run(const struct config *cfg, volatile sig_atomic_t *stop);

#endif
