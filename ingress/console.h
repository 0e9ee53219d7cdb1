/*
 * console — the operator console under /console: a page (ingress/console/,
 * embedded at build time) and its JSON API, served by ingress.
 *
 *   GET  /console, /console/, /console/console.js, /console/console.css,
 *        /console/uPlot.iife.min.js, /console/uPlot.min.css, /console/uPlot.LICENSE
 *        the page and the chart library it embeds (ingress/console/vendor/);
 *        no auth (it holds no data), Content-Security-Policy default-src
 *        'self' (uPlot styles its elements through the CSSOM, which that
 *        allows: no 'unsafe-inline'), X-Frame-Options DENY
 *   GET  /console/api/conversations?mode=all|ai|escalating|human|queue&limit=N&q=TEXT
 *        {"now_ms", "total", "counts": {ai, escalating, human}, "conversations": [...]}:
 *        newest activity first; mode=queue is the escalation queue
 *        (escalating and human), longest waiting first. limit 1..5000, default 200.
 *        q (at most 100 characters) keeps the conversations whose customer's
 *        WhatsApp name contains it (case and accents ignored) or, when q is
 *        a number ("+55 11 9888-1111"), whose customer's number contains
 *        its digits; total counts those, counts stay the whole store's.
 *        Each conversation: key, customer (masked as in the logs), name
 *        (WhatsApp ProfileName or null), business, mode, state ("ai",
 *        "waiting": escalated, no agent yet, or "with_agent": an agent
 *        accepted the task or wrote), activity, counters and, unless in ai
 *        mode, escalation {trigger, reason, at_ms (waiting since),
 *        accepted_at_ms, agent_since_ms (accepted or first agent message),
 *        waited_ms, agent, queued_until_ms, flex_conversation, task}.
 *   GET  /console/api/conversation?address=CUSTOMER[|BUSINESS][&business=B]
 *        mode, escalation, Flex SIDs, timeline and transcript (the last 500
 *        turns), like `batonctl show --json`; 404 when baton does not know it.
 *        Each turn has a kind: "message"; for ai turns that are baton's
 *        own text (the number's settings, config_for) "holding"
 *        (handoff.holding_message, handoff.closed_message with its %h/%n
 *        filled in) or "notice" (handoff.no_agent_message,
 *        handoff.no_agent_ai_message, handoff.failure_message, ai.apology),
 *        with "setting" naming which. System turns are the router's notes
 *        to the LLM and their text never leaves here: a hand-back's is
 *        "handback" with a line told from the timeline ("Handed back to the
 *        AI — task completed, after 12 min with Marta") and handback {path,
 *        agent, escalated_ms, agent_since_ms, at_ms}; any other is "note".
 *   GET  /console/api/reports?from_ms=&to_ms=
 *        figures over a period (default the last 24 h; at most 366 days),
 *        from the conversations' timelines: escalations {total,
 *        by_trigger, per_hour {start_ms, step_ms, counts}} ("escalated"
 *        entries in the period); time_to_agent {accepted, not_accepted,
 *        waiting, median_ms, p90_ms, max_ms, bins [{from_ms, to_ms, count}]}
 *        (accepted - escalated of each handoff escalated in the period);
 *        handbacks {total, by_path}; conversations {active (a turn or a
 *        timeline entry in the period), ai_only (active, and never
 *        escalating nor with a person during the period), with_person,
 *        ai_only_share}; scan {conversations, reads, truncated}. One read
 *        transaction; the walk stops after 300,000 reads (truncated: true)
 *        so a report never holds ingress's loop for long.
 *   POST /console/api/handback, /console/api/escalate
 *        JSON {"address", "business"?, "reason"?} (Content-Type application/json)
 *
 * Off (every /console URL answers 404) unless console.token is set. The API
 * wants "Authorization: Bearer <console.token>", or HTTP basic auth with
 * console.user/console.password when both are set; secrets are compared in
 * constant time (SHA-256 of both, CRYPTO_memcmp). Missing or wrong: 401 with
 * WWW-Authenticate (Basic only for a request that did not try a bearer
 * token, so a wrong token never pops up the browser's login dialog). Unknown
 * /console URL: 404; wrong method: 405. API answers are never cached.
 *
 * Reads: the router's LMDB read-only (store_open_readonly), one short read
 * transaction per request in ingress's own loop; LMDB readers never block
 * the writer. The environment is opened at the first request that finds it
 * (503 until the router has created it).
 *
 * Changes never happen here: hand-back and escalate are handed to the
 * server's forward callback, which turns them into exactly the event of
 * /admin/handback and /admin/escalate (events_admin), sends it to the router
 * and suspends the connection until the router's ACK: 200 {"ok":true}, 404
 * no such conversation, 400 bad body, 503 router busy or silent.
 */
#ifndef BATON_CONSOLE_H
#define BATON_CONSOLE_H

#include <microhttpd.h>
#include <stdbool.h>

#include "config.h"

struct console;

/**
 * The server's side: take connection c over as the operator command op
 * (EV_ADMIN_HANDBACK or EV_ADMIN_ESCALATE), its credentials already checked
 * by the console; the JSON body follows. Sets *con_cls and returns MHD_YES,
 * or queues an error answer.
 */
typedef enum MHD_Result (*console_forward_fn)(void *host, struct MHD_Connection *c,
					      const char *op, void **con_cls);

/** A console for cfg (kept by reference); fwd(host, ...) performs its commands. */
struct console *console_new(const struct config *cfg, console_forward_fn fwd, void *host);
void console_free(struct console *k);

/** Whether url is the console's: "/console" or anything under "/console/". */
bool console_owns(const char *url);

/**
 * Answers (or, for a command, hands to fwd) the first call of MHD's access
 * handler for a URL console_owns. *con_cls is NULL on entry; later calls of
 * the same request are the server's (the forwarded command's).
 */
enum MHD_Result console_handle(struct console *k, struct MHD_Connection *c, const char *url,
			       const char *method, void **con_cls);

#endif
