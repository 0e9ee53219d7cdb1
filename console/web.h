/*
 * web — baton-console's HTTP side: the page (console/page/, embedded at
 * build time) and the API under /console, behind the console's
 * credentials.
 *
 *   GET  /console, /console/, /console/console.js, /console/console.css,
 *        /console/uPlot.iife.min.js, /console/uPlot.min.css, /console/uPlot.LICENSE
 *        the page and the chart library it embeds; no auth (it holds no data)
 *   GET  /console/api/conversations, /console/api/conversation,
 *        /console/api/reports, /console/api/conversations/KEY/media/SEQ/I
 *        (api.h)
 *   POST /console/api/handback, /console/api/escalate (command.h)
 *        JSON {"address", "business"?, "reason"?}, Content-Type
 *        application/json (a form cannot send it across sites without a
 *        preflight this server never grants)
 *   GET  /healthz  200 (for a load balancer in front)
 *
 * The API wants "Authorization: Bearer <console.token>", or HTTP basic
 * auth with console.user/console.password when both are set (constant-time
 * comparison, auth.h). Missing or wrong: 401 with WWW-Authenticate (Basic
 * only for a request that did not try a bearer token, so a wrong token
 * never pops up the browser's login dialog). Unknown URL: 404; wrong
 * method: 405. Each connection has a thread of its own (reads are LMDB
 * read transactions, commands wait for the router, media waits for its
 * download on mediaproxy.h's thread), at most WEB_CONNECTIONS at once.
 */
#ifndef BATON_WEB_H
#define BATON_WEB_H

#include <signal.h>

#include "config.h"

/** Serve until *stop is set: 0, or -1 when it cannot start (logged). */
int web_run(const struct config *cfg, volatile sig_atomic_t *stop);

#endif
