/*
 * pg — baton's state in PostgreSQL; see pg.h for the schema.
 *
 * Values travel in binary (bytea as raw bytes, integers in network order):
 * no escaping, no parsing. A batch is one pipeline: the fence and the
 * upserts go out together and run in the pipeline's implicit transaction,
 * committed at its sync point, so one batch costs one round trip and any
 * error (a lost lease among them) leaves nothing written.
 */
#include "pg.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <endian.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

#define PG_OID_INT2 21
#define PG_OID_INT8 20
#define PG_OID_BYTEA 17
#define PG_OID_TEXT 25
/* Rows per INSERT: four parameters each, under the protocol's 65,535. */
#define PG_ROWS_PER_INSERT 4000
#define PG_FENCE_SQLSTATE "BF001"
#define PG_ADVISORY_KEY "7242936531"

/*
 * libpq is loaded on the first connection, not linked: a process whose state
 * is in LMDB alone (state.backend = lmdb, the default) never maps it nor
 * the libraries it brings (TLS, Kerberos, LDAP, SASL: some 4.5 MiB of a
 * router's resident set, counted in its peak for nothing). The soname is
 * the runtime package's (libpq5), as linking would have recorded it.
 */
#define PG_LIBPQ "libpq.so.5"
#define PQ_FUNCS(X) \
	X(PQclear) \
	X(PQconnectdbParams) \
	X(PQdb) \
	X(PQenterPipelineMode) \
	X(PQerrorMessage) \
	X(PQexec) \
	X(PQexecParams) \
	X(PQexitPipelineMode) \
	X(PQfinish) \
	X(PQgetResult) \
	X(PQgetisnull) \
	X(PQgetlength) \
	X(PQgetvalue) \
	X(PQhost) \
	X(PQntuples) \
	X(PQpipelineSync) \
	X(PQport) \
	X(PQresultErrorField) \
	X(PQresultErrorMessage) \
	X(PQresultStatus) \
	X(PQsendQueryParams) \
	X(PQsetNoticeProcessor) \
	X(PQstatus)

static struct {
#define PQ_PTR(f) __typeof__(f) *f;
	PQ_FUNCS(PQ_PTR)
#undef PQ_PTR
} pq;
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static char pq_error[256]; /* why libpq could not be loaded, "" once it is */

/* Sets *fp to symbol name of lib; false (pq_error says which) when absent. */
static bool pq_sym(void *lib, const char *name, void *fp)
{
	void *sym = dlsym(lib, name);
	if (!sym) {
		snprintf(pq_error, sizeof(pq_error), "%s has no %s", PG_LIBPQ, name);
		return false;
	}
	/* memcpy: ISO C has no conversion from void * to a function pointer. */
	memcpy(fp, &sym, sizeof(sym));
	return true;
}

static void pq_load(void)
{
	void *lib = dlopen(PG_LIBPQ, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(pq_error, sizeof(pq_error), "%s", dlerror());
		return;
	}
#define PQ_SYM(f)                           \
	if (!pq_sym(lib, #f, (void *)&pq.f)) \
		return;
	PQ_FUNCS(PQ_SYM)
#undef PQ_SYM
	/* The handle stays open for the process's life: the functions are in use. */
}

/* 0 once libpq is loaded (the first call loads it, threads or not), else -1. */
static int pq_ready(void)
{
	pthread_once(&pq_once, pq_load);
	return pq_error[0] ? -1 : 0;
}

struct pg {
	char *dsn, *password, *app;
	PGconn *conn;
	bool down_logged;
	char where[160];
};

/* The migrations, in order: migration i brings the schema to version i + 1. */
static const char *const pg_migrations[] = {
	"CREATE TABLE baton_cluster (id text NOT NULL, pruned_rev bigint NOT NULL);"
	"INSERT INTO baton_cluster VALUES (md5(random()::text || clock_timestamp()::text), 0);"
	"CREATE TABLE baton_lease (name text PRIMARY KEY, holder text NOT NULL,"
	" epoch bigint NOT NULL, expires_at timestamptz NOT NULL, rev bigint NOT NULL);"
	"INSERT INTO baton_lease VALUES ('router', '', 0, '-infinity', 0);"
	"CREATE TABLE baton_kv (db smallint NOT NULL, k bytea NOT NULL, v bytea,"
	" rev bigint NOT NULL, PRIMARY KEY (db, k));"
	"CREATE INDEX baton_kv_rev ON baton_kv (rev);"
	/* The store's recent index exists from the first revision on (store.h). */
	"INSERT INTO baton_kv VALUES (6, 'recent_index'::bytea, '1'::bytea, 0);"
	"CREATE FUNCTION baton_fence(h text, e bigint, lease_ms bigint, r bigint) RETURNS void"
	" LANGUAGE plpgsql AS $$ BEGIN"
	"  UPDATE baton_lease SET expires_at = now() + lease_ms * interval '1 millisecond', rev = r"
	"   WHERE name = 'router' AND holder = h AND epoch = e;"
	"  IF NOT FOUND THEN"
	"   RAISE EXCEPTION 'baton: the router lease is no longer held at epoch %', e"
	"    USING ERRCODE = '" PG_FENCE_SQLSTATE "';"
	"  END IF;"
	" END $$;",
};

struct pg *pg_new(const char *dsn, const char *password, const char *app)
{
	struct pg *p = xcalloc(1, sizeof(*p));
	p->dsn = xstrdup(dsn ? dsn : "");
	p->password = password && *password ? xstrdup(password) : NULL;
	p->app = xstrdup(app ? app : "baton");
	return p;
}

static void pg_drop(struct pg *p)
{
	if (p->conn)
		pq.PQfinish(p->conn);
	p->conn = NULL;
	p->where[0] = '\0';
}

void pg_free(struct pg *p)
{
	if (!p)
		return;
	pg_drop(p);
	if (p->password)
		explicit_bzero(p->password, strlen(p->password));
	free(p->password);
	free(p->dsn);
	free(p->app);
	free(p);
}

const char *pg_where(const struct pg *p)
{
	return p->where;
}

/* The server's message on one line (libpq's end with a newline). */
static const char *pg_msg(const PGconn *c, const PGresult *r, char *buf, size_t len)
{
	const char *m = r ? pq.PQresultErrorMessage(r) : pq.PQerrorMessage(c);
	snprintf(buf, len, "%s", m && *m ? m : "no message");
	for (char *s = buf; *s; s++)
		if (*s == '\n')
			*s = *(s + 1) ? ' ' : '\0';
	return buf;
}

/* The server's notices ("relation already exists, skipping" from an
 * idempotent migration) would go to stderr unformatted: debug log lines. */
static void pg_notice(void *arg, const char *message)
{
	(void)arg;
	size_t n = strlen(message);
	while (n && message[n - 1] == '\n')
		n--;
	log_debug("postgres: %.*s", (int)n, message);
}

int pg_ready(struct pg *p)
{
	char msg[512];
	if (p->conn && pq.PQstatus(p->conn) == CONNECTION_OK)
		return 0;
	pg_drop(p);
	if (pq_ready() < 0) {
		if (!p->down_logged)
			log_err("postgres: cannot load libpq (package libpq5): %s", pq_error);
		p->down_logged = true;
		return -1;
	}
	/* A database that stops answering must not hold the router for long:
	 * a connect timeout, TCP keepalives and a user timeout bound every wait. */
	const char *keys[] = { "dbname", "password", "application_name", "connect_timeout",
			       "keepalives_idle", "keepalives_interval", "keepalives_count",
			       "tcp_user_timeout", NULL };
	const char *vals[] = { p->dsn, p->password, p->app, "5", "5", "2", "3", "10000", NULL };
	p->conn = pq.PQconnectdbParams(keys, vals, 1);
	if (!p->conn || pq.PQstatus(p->conn) != CONNECTION_OK) {
		if (!p->down_logged)
			log_warn("postgres: cannot connect: %s", pg_msg(p->conn, NULL, msg, sizeof(msg)));
		p->down_logged = true;
		pg_drop(p);
		return -1;
	}
	pq.PQsetNoticeProcessor(p->conn, pg_notice, NULL);
	snprintf(p->where, sizeof(p->where), "%s:%s/%s", pq.PQhost(p->conn), pq.PQport(p->conn),
		 pq.PQdb(p->conn));
	if (p->down_logged)
		log_notice("postgres: connected again to %s", p->where);
	p->down_logged = false;
	return 0;
}

/* Runs sql (no parameters); on error logs what failed and drops the connection. */
static int pg_exec(struct pg *p, const char *what, const char *sql)
{
	char msg[512];
	PGresult *r = pq.PQexec(p->conn, sql);
	ExecStatusType s = pq.PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		log_warn("postgres: %s failed: %s", what, pg_msg(p->conn, r, msg, sizeof(msg)));
		pq.PQclear(r);
		pg_drop(p);
		return -1;
	}
	pq.PQclear(r);
	return 0;
}

static PGresult *pg_query(struct pg *p, const char *what, const char *sql, int n,
			  const char *const *vals, ExecStatusType want)
{
	char msg[512];
	PGresult *r = pq.PQexecParams(p->conn, sql, n, NULL, vals, NULL, NULL, 0);
	if (pq.PQresultStatus(r) != want) {
		log_warn("postgres: %s failed: %s", what, pg_msg(p->conn, r, msg, sizeof(msg)));
		pq.PQclear(r);
		pg_drop(p);
		return NULL;
	}
	return r;
}

int pg_migrate(struct pg *p)
{
	char sql[128];
	int version = 0;
	if (pg_ready(p) < 0)
		return -1;
	if (pg_exec(p, "migration lock", "BEGIN; SELECT pg_advisory_xact_lock(" PG_ADVISORY_KEY ")") < 0 ||
	    pg_exec(p, "schema table", "CREATE TABLE IF NOT EXISTS baton_schema (version int NOT NULL)") < 0)
		return -1;
	PGresult *r = pg_query(p, "schema version", "SELECT version FROM baton_schema", 0, NULL,
			       PGRES_TUPLES_OK);
	if (!r)
		return -1;
	if (pq.PQntuples(r) == 1)
		version = atoi(pq.PQgetvalue(r, 0, 0));
	else if (pg_exec(p, "schema version", "INSERT INTO baton_schema VALUES (0)") < 0) {
		pq.PQclear(r);
		return -1;
	}
	pq.PQclear(r);
	if (version > PG_SCHEMA_VERSION) {
		log_err("postgres: the schema is version %d, newer than this baton's %d: upgrade "
			"baton", version, PG_SCHEMA_VERSION);
		pg_exec(p, "rollback", "ROLLBACK");
		return -1;
	}
	for (int v = version; v < PG_SCHEMA_VERSION; v++) {
		snprintf(sql, sizeof(sql), "UPDATE baton_schema SET version = %d", v + 1);
		if (pg_exec(p, "migration", pg_migrations[v]) < 0 || pg_exec(p, "migration", sql) < 0)
			return -1;
		log_notice("postgres: schema migrated to version %d on %s", v + 1, p->where);
	}
	return pg_exec(p, "migration commit", "COMMIT");
}

static uint64_t pg_u64(PGresult *r, int row, int col)
{
	return pq.PQgetisnull(r, row, col) ? 0 : strtoull(pq.PQgetvalue(r, row, col), NULL, 10);
}

int pg_head(struct pg *p, struct pg_head *h)
{
	memset(h, 0, sizeof(*h));
	if (pg_ready(p) < 0)
		return -1;
	PGresult *r = pg_query(p, "reading the lease",
			       "SELECT c.id, c.pruned_rev, l.rev, l.epoch, l.holder, l.expires_at > now()"
			       " FROM baton_cluster c, baton_lease l WHERE l.name = 'router'",
			       0, NULL, PGRES_TUPLES_OK);
	if (!r)
		return -1;
	if (pq.PQntuples(r) != 1) {
		pq.PQclear(r);
		log_warn("postgres: no baton schema on %s (the router creates it when it starts)",
			 p->where);
		return -1;
	}
	snprintf(h->cluster, sizeof(h->cluster), "%s", pq.PQgetvalue(r, 0, 0));
	h->pruned_rev = pg_u64(r, 0, 1);
	h->rev = pg_u64(r, 0, 2);
	h->epoch = pg_u64(r, 0, 3);
	snprintf(h->holder, sizeof(h->holder), "%s", pq.PQgetvalue(r, 0, 4));
	h->live = pq.PQgetvalue(r, 0, 5)[0] == 't';
	pq.PQclear(r);
	return 0;
}

int pg_lease_take(struct pg *p, const char *holder, uint64_t lease_ms, uint64_t *epoch,
		  uint64_t *rev, struct pg_head *h)
{
	char ms[24];
	snprintf(ms, sizeof(ms), "%llu", (unsigned long long)lease_ms);
	const char *vals[] = { holder, ms };
	if (pg_ready(p) < 0)
		return -1;
	PGresult *r = pg_query(p, "taking the lease",
			       "UPDATE baton_lease SET holder = $1, epoch = epoch + 1,"
			       " expires_at = now() + $2::bigint * interval '1 millisecond'"
			       " WHERE name = 'router' AND expires_at < now() RETURNING epoch, rev",
			       2, vals, PGRES_TUPLES_OK);
	if (!r)
		return -1;
	int taken = pq.PQntuples(r) == 1;
	if (taken) {
		*epoch = pg_u64(r, 0, 0);
		*rev = pg_u64(r, 0, 1);
	}
	pq.PQclear(r);
	if (!taken && h && pg_head(p, h) < 0)
		return -1;
	return taken;
}

int pg_lease_renew(struct pg *p, const char *holder, uint64_t epoch, uint64_t lease_ms)
{
	char e[24], ms[24];
	snprintf(e, sizeof(e), "%llu", (unsigned long long)epoch);
	snprintf(ms, sizeof(ms), "%llu", (unsigned long long)lease_ms);
	const char *vals[] = { holder, e, ms };
	if (pg_ready(p) < 0)
		return -1;
	PGresult *r = pg_query(p, "renewing the lease",
			       "UPDATE baton_lease SET expires_at = now() + $3::bigint * interval "
			       "'1 millisecond' WHERE name = 'router' AND holder = $1 AND epoch = $2::bigint"
			       " RETURNING 1",
			       3, vals, PGRES_TUPLES_OK);
	if (!r)
		return -1;
	int held = pq.PQntuples(r) == 1;
	pq.PQclear(r);
	return held;
}

/* --- the batch --- */

static void pg_be16(unsigned char *b, uint16_t v) { v = htons(v); memcpy(b, &v, 2); }
static void pg_be64(unsigned char *b, uint64_t v) { v = htobe64(v); memcpy(b, &v, 8); }

/* "INSERT ... VALUES ($1,$2,$3,$4),... ON CONFLICT ..." for n rows; caller frees. */
static char *pg_insert_sql(size_t n)
{
	size_t cap = 160 + n * 48, o = 0;
	char *s = xmalloc(cap);
	o += (size_t)snprintf(s + o, cap - o, "INSERT INTO baton_kv (db, k, v, rev) VALUES ");
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(s + o, cap - o, "%s($%zu,$%zu,$%zu,$%zu)", i ? "," : "",
				      4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4);
	snprintf(s + o, cap - o, " ON CONFLICT (db, k) DO UPDATE SET v = EXCLUDED.v, rev = EXCLUDED.rev");
	return s;
}

/* Queues one INSERT of rows [from, from + n) of j. 0 or -1. */
static int pg_send_rows(struct pg *p, const struct journal *j, size_t from, size_t n,
			uint64_t rev, unsigned char *ints)
{
	size_t np = 4 * n;
	const char **vals = xcalloc(np, sizeof(*vals));
	int *lens = xcalloc(np, sizeof(*lens)), *fmts = xcalloc(np, sizeof(*fmts));
	Oid *types = xcalloc(np, sizeof(*types));
	unsigned char revb[8];
	pg_be64(revb, rev);
	for (size_t i = 0; i < n; i++) {
		const struct journal_entry *e = &j->e[from + i];
		unsigned char *db = ints + 2 * i;
		pg_be16(db, e->db);
		types[4 * i] = PG_OID_INT2;
		vals[4 * i] = (const char *)db;
		lens[4 * i] = 2;
		types[4 * i + 1] = PG_OID_BYTEA;
		vals[4 * i + 1] = (const char *)e->key;
		lens[4 * i + 1] = (int)e->klen;
		types[4 * i + 2] = PG_OID_BYTEA;
		vals[4 * i + 2] = e->del ? NULL : (const char *)e->val;
		lens[4 * i + 2] = e->del ? 0 : (int)e->vlen;
		types[4 * i + 3] = PG_OID_INT8;
		vals[4 * i + 3] = (const char *)revb;
		lens[4 * i + 3] = 8;
		for (int k = 0; k < 4; k++)
			fmts[4 * i + k] = 1;
	}
	char *sql = pg_insert_sql(n);
	int ok = pq.PQsendQueryParams(p->conn, sql, (int)np, types, vals, lens, fmts, 0);
	free(sql);
	free(vals);
	free(lens);
	free(fmts);
	free(types);
	return ok ? 0 : -1;
}

enum pg_commit pg_commit(struct pg *p, const char *holder, uint64_t epoch, uint64_t lease_ms,
			 uint64_t rev, const struct journal *j)
{
	char e[24], ms[24], r[24], msg[512];
	enum pg_commit out = PG_COMMITTED;
	bool sent = false, synced = false;
	unsigned char *ints = NULL;

	if (pg_ready(p) < 0)
		return PG_FAILED;
	snprintf(e, sizeof(e), "%llu", (unsigned long long)epoch);
	snprintf(ms, sizeof(ms), "%llu", (unsigned long long)lease_ms);
	snprintf(r, sizeof(r), "%llu", (unsigned long long)rev);
	const char *fence[] = { holder, e, ms, r };
	if (!pq.PQenterPipelineMode(p->conn))
		goto send_failed;
	if (!pq.PQsendQueryParams(p->conn, "SELECT baton_fence($1, $2::bigint, $3::bigint, $4::bigint)",
			       4, NULL, fence, NULL, NULL, 0))
		goto send_failed;
	ints = xmalloc(2 * PG_ROWS_PER_INSERT);
	for (size_t from = 0; from < j->n; from += PG_ROWS_PER_INSERT) {
		size_t n = j->n - from < PG_ROWS_PER_INSERT ? j->n - from : PG_ROWS_PER_INSERT;
		/* The parameters are read when the query is queued: ints can be reused. */
		if (pg_send_rows(p, j, from, n, rev, ints) < 0)
			goto send_failed;
	}
	if (!pq.PQpipelineSync(p->conn))
		goto send_failed;
	sent = true;
	/* Each query's result then NULL, then the sync point. */
	size_t nulls = 0, queries = 2 + (j->n + PG_ROWS_PER_INSERT - 1) / PG_ROWS_PER_INSERT;
	for (;;) {
		PGresult *res = pq.PQgetResult(p->conn);
		if (!res) {
			if (pq.PQstatus(p->conn) != CONNECTION_OK || ++nulls > queries)
				break;
			continue;
		}
		ExecStatusType st = pq.PQresultStatus(res);
		if (st == PGRES_PIPELINE_SYNC) {
			pq.PQclear(res);
			synced = true;
			break;
		}
		if (st == PGRES_FATAL_ERROR && out == PG_COMMITTED) {
			const char *code = pq.PQresultErrorField(res, PG_DIAG_SQLSTATE);
			if (code && !strcmp(code, PG_FENCE_SQLSTATE)) {
				out = PG_FENCED;
			} else {
				out = PG_FAILED;
				log_warn("postgres: batch of revision %s not written: %s", r,
					 pg_msg(p->conn, res, msg, sizeof(msg)));
			}
		}
		pq.PQclear(res);
	}
	free(ints);
	if (!synced) {
		/* The connection broke after the sync went out: the server may have
		 * committed. The caller finds out from the revision. */
		log_warn("postgres: connection lost while committing revision %s: %s", r,
			 pg_msg(p->conn, NULL, msg, sizeof(msg)));
		pg_drop(p);
		return out == PG_COMMITTED ? PG_UNKNOWN : out;
	}
	pq.PQexitPipelineMode(p->conn);
	return out;
send_failed:
	free(ints);
	log_warn("postgres: cannot send revision %s: %s", r, pg_msg(p->conn, NULL, msg, sizeof(msg)));
	pg_drop(p);
	return sent ? PG_UNKNOWN : PG_FAILED;
}

/* --- reading for caches --- */

static uint64_t pg_bin_u64(PGresult *res, int row, int col)
{
	uint64_t v;
	memcpy(&v, pq.PQgetvalue(res, row, col), 8);
	return be64toh(v);
}

/* Hands the rows of a binary (db, k, v, rev) result to fn. 0, or fn's stop (1). */
static int pg_rows(PGresult *res, pg_row_fn fn, void *arg, uint64_t *last)
{
	for (int i = 0; i < pq.PQntuples(res); i++) {
		uint16_t db;
		memcpy(&db, pq.PQgetvalue(res, i, 0), 2);
		uint64_t rev = pg_bin_u64(res, i, 3);
		bool del = pq.PQgetisnull(res, i, 2);
		if (fn(arg, (uint8_t)ntohs(db), pq.PQgetvalue(res, i, 1), (size_t)pq.PQgetlength(res, i, 1),
		       del ? NULL : pq.PQgetvalue(res, i, 2), del ? 0 : (size_t)pq.PQgetlength(res, i, 2),
		       rev))
			return 1;
		if (last)
			*last = rev;
	}
	return 0;
}

int pg_changes(struct pg *p, uint64_t after, size_t limit, pg_row_fn fn, void *arg, size_t *n,
	       uint64_t *last)
{
	char a[24], l[24], msg[512];
	*n = 0;
	*last = after;
	if (pg_ready(p) < 0)
		return -1;
	snprintf(a, sizeof(a), "%llu", (unsigned long long)after);
	snprintf(l, sizeof(l), "%zu", limit);
	const char *vals[] = { a, l };
	/* Whole revisions: up to the revision of the limit-th row, all of it. */
	PGresult *res = pq.PQexecParams(p->conn,
				     "WITH upto AS (SELECT coalesce(max(rev), 0) AS r FROM"
				     " (SELECT rev FROM baton_kv WHERE rev > $1::bigint ORDER BY rev"
				     "  LIMIT $2::bigint) s)"
				     " SELECT db, k, v, rev FROM baton_kv, upto"
				     " WHERE rev > $1::bigint AND rev <= upto.r ORDER BY rev, db, k",
				     2, NULL, vals, NULL, NULL, 1);
	if (pq.PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("postgres: reading changes failed: %s", pg_msg(p->conn, res, msg, sizeof(msg)));
		pq.PQclear(res);
		pg_drop(p);
		return -1;
	}
	*n = (size_t)pq.PQntuples(res);
	int stop = pg_rows(res, fn, arg, last);
	pq.PQclear(res);
	return stop ? -1 : 0;
}

int pg_snapshot(struct pg *p, pg_row_fn fn, void *arg, uint64_t *rev)
{
	char msg[512];
	if (pg_ready(p) < 0)
		return -1;
	/* One snapshot for the revision and every page of rows. */
	if (pg_exec(p, "snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") < 0)
		return -1;
	PGresult *res = pg_query(p, "snapshot revision",
				 "SELECT rev FROM baton_lease WHERE name = 'router'", 0, NULL,
				 PGRES_TUPLES_OK);
	if (!res)
		return -1;
	*rev = pq.PQntuples(res) == 1 ? pg_u64(res, 0, 0) : 0;
	pq.PQclear(res);
	if (pg_exec(p, "snapshot cursor", "DECLARE baton_snap NO SCROLL CURSOR FOR SELECT db, k, v,"
		    " rev FROM baton_kv WHERE v IS NOT NULL") < 0)
		return -1;
	for (;;) {
		res = pq.PQexecParams(p->conn, "FETCH 20000 FROM baton_snap", 0, NULL, NULL, NULL, NULL, 1);
		if (pq.PQresultStatus(res) != PGRES_TUPLES_OK) {
			log_warn("postgres: reading a snapshot failed: %s",
				 pg_msg(p->conn, res, msg, sizeof(msg)));
			pq.PQclear(res);
			pg_drop(p);
			return -1;
		}
		int n = pq.PQntuples(res), stop = pg_rows(res, fn, arg, NULL);
		pq.PQclear(res);
		if (stop) {
			pg_exec(p, "rollback", "ROLLBACK");
			return -1;
		}
		if (n == 0)
			break;
	}
	return pg_exec(p, "snapshot end", "COMMIT");
}

int pg_prune(struct pg *p, uint64_t below)
{
	char b[24];
	snprintf(b, sizeof(b), "%llu", (unsigned long long)below);
	const char *vals[] = { b };
	if (pg_ready(p) < 0)
		return -1;
	PGresult *r = pg_query(p, "pruning deletes",
			       "WITH gone AS (DELETE FROM baton_kv WHERE v IS NULL AND rev < $1::bigint)"
			       " UPDATE baton_cluster SET pruned_rev = greatest(pruned_rev, $1::bigint)",
			       1, vals, PGRES_COMMAND_OK);
	if (!r)
		return -1;
	pq.PQclear(r);
	return 0;
}
