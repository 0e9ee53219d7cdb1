/* slow — request-head deadlines for MHD connections; see slow.h. */
#include "slow.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <utlist.h>

#include "clock.h"
#include "xalloc.h"

struct slow_conn {
	struct MHD_Connection *c;
	int fd;
	uint64_t since;  /* mono ms the head clock started */
	bool waiting;    /* in the list: its head is awaited */
	struct slow_conn *prev, *next;
};

struct slow {
	uint64_t head_ms;
	struct slow_conn *waiting; /* utlist DL, oldest first (since grows) */
};

struct slow *slow_new(uint64_t head_ms)
{
	struct slow *sl = xcalloc(1, sizeof(*sl));
	sl->head_ms = head_ms;
	return sl;
}

void slow_free(struct slow **sp)
{
	if (!sp || !*sp)
		return;
	struct slow_conn *e, *t;
	DL_FOREACH_SAFE((*sp)->waiting, e, t) {
		DL_DELETE((*sp)->waiting, e);
		e->waiting = false; /* freed by MHD's CLOSED notification */
	}
	free(*sp);
	*sp = NULL;
}

static void slow_wait(struct slow *sl, struct slow_conn *e)
{
	if (e->waiting)
		DL_DELETE(sl->waiting, e);
	e->since = clock_mono_ms();
	e->waiting = true;
	DL_APPEND(sl->waiting, e);
}

static void slow_unwait(struct slow *sl, struct slow_conn *e)
{
	if (e->waiting)
		DL_DELETE(sl->waiting, e);
	e->waiting = false;
}

void slow_notify(void *cls, struct MHD_Connection *c, void **socket_context,
		 enum MHD_ConnectionNotificationCode toe)
{
	struct slow *sl = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		struct slow_conn *e = xcalloc(1, sizeof(*e));
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		e->c = c;
		e->fd = ci ? ci->connect_fd : -1;
		*socket_context = e;
		slow_wait(sl, e);
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
		struct slow_conn *e = *socket_context;
		slow_unwait(sl, e);
		free(e);
		*socket_context = NULL;
	}
}

static struct slow_conn *slow_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

void slow_head_done(struct slow *sl, struct MHD_Connection *c)
{
	struct slow_conn *e = slow_of(c);
	if (e)
		slow_unwait(sl, e);
}

void slow_request_done(struct slow *sl, struct MHD_Connection *c)
{
	struct slow_conn *e = slow_of(c);
	if (e)
		slow_wait(sl, e); /* keep-alive: the next head has its own deadline */
}

size_t slow_expire(struct slow *sl, uint64_t now)
{
	size_t n = 0;
	struct slow_conn *e;
	while ((e = sl->waiting) && e->since + sl->head_ms <= now) {
		slow_unwait(sl, e);
		if (e->fd >= 0)
			shutdown(e->fd, SHUT_RDWR);
		n++;
	}
	return n;
}

uint64_t slow_next_due(const struct slow *sl)
{
	return sl->waiting ? sl->waiting->since + sl->head_ms : 0;
}
