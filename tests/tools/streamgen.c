/*
 * streamgen — writes a synthetic capture (common/capture.h) of WhatsApp
 * traffic, for baton-replay and the benches.
 *
 *   streamgen --out DIR --messages N --conversations C [--zipf S] [--rate R]
 *             [--escalate FRACTION] [--handback FRACTION] [--seed N]
 *             [--business whatsapp:+E164] [--account-sid AC...] [--max-mb M]
 *
 * Messages are Twilio inbound-message webhooks (signed-form bodies as
 * Twilio posts them to /twilio/messages). Which conversation writes is
 * Zipf-distributed (exponent S) over C conversations; arrivals start now
 * and are spaced by exponential gaps of mean 1/R s. A FRACTION of the
 * conversations that write at all sends, at one of its messages, a text
 * with "quiero hablar con una persona", which baton's escalation rules
 * escalate; the --handback share of those gets an /admin/handback record
 * (JSON {"address"}) after it, before the conversation's next message.
 *
 * Conversation i is whatsapp:+1555 followed by i in 7 digits, so tests can
 * name them. Same seed, same stream (only the start time differs).
 * Prints one summary line; exit 0, 1 on a write error, 2 on bad options.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "clock.h"
#include "form.h"
#include "log.h"
#include "xalloc.h"

#define SG_EXIT_USAGE 2
#define SG_CONV_MAX 10000000u /* 7 digits after +1555 */
#define SG_ESCALATION "quiero hablar con una persona"

struct sg_opts {
	const char *out;
	unsigned long messages;
	unsigned long conversations;
	double zipf;
	double rate;
	double escalate;
	double handback;
	uint64_t seed;
	const char *business;
	const char *account;
	int max_mb;
	bool tag_sid; /* end each Body with " ref:<MessageSid>", for the bench's latency */
};

/* One record to write: a message (msg >= 0) or a hand-back of conversation conv. */
struct sg_rec {
	double t_ms;      /* offset from the start */
	uint32_t conv;
	int64_t msg;      /* index of the message, -1 for a hand-back */
	bool escalation;
};

/* splitmix64: small, seedable, and its mix is a bijection (unique SIDs). */
static uint64_t sg_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t sg_state;

static uint64_t sg_rand(void)
{
	sg_state += 0x9e3779b97f4a7c15ull;
	return sg_mix(sg_state);
}

/* Uniform in [0, 1). */
static double sg_unit(void)
{
	return (double)(sg_rand() >> 11) * 0x1.0p-53;
}

static uint64_t sg_below(uint64_t n)
{
	return n ? sg_rand() % n : 0;
}

static const char *const sg_names[] = {
	"Ana", "Lucía", "Carlos", "María José", "John", "Emily", "Diego", "Sofía", "Mateo",
	"Valentina", "Michael", "Sarah", "Javier", "Camila", "David", "Laura", "Andrés", "Paula",
	"Chris", "Isabel",
};

static const char *const sg_greetings[] = {
	"", "", "", "Hola, ", "Hola! ", "Buenas tardes. ", "Buenos días, ", "Hi! ", "Hello, ",
	"Good morning, ", "Hey, ",
};

/* Clinic and shop questions; none has an escalation word (human, agent,
 * persona, operador, ...) or "reset", so only SG_ESCALATION escalates. */
static const char *const sg_questions[] = {
	"¿dónde queda la clínica?",
	"¿a qué hora abren mañana?",
	"¿tienen turno para dermatología el martes?",
	"¿cuánto cuesta una consulta general?",
	"¿aceptan mi obra social?",
	"necesito cambiar mi turno del jueves",
	"¿hacen análisis de sangre sin cita?",
	"¿el pediatra atiende los sábados?",
	"¿puedo pagar con tarjeta?",
	"¿tienen estacionamiento?",
	"quiero cancelar mi cita de mañana",
	"¿cuál es el horario de cardiología?",
	"¿hacen envíos a domicilio?",
	"¿el pedido 4821 ya salió?",
	"¿tienen talle M de la remera azul?",
	"¿cuánto tarda el envío a Rosario?",
	"¿puedo devolver un producto si no me queda?",
	"¿hay descuento pagando en efectivo?",
	"where is the clinic located?",
	"what are your opening hours on Saturday?",
	"can I book a dermatology appointment for Tuesday?",
	"how much is a general consultation?",
	"do you take walk-ins for blood tests?",
	"I need to reschedule my appointment",
	"is there parking near the clinic?",
	"do you have a pediatrician available this week?",
	"has my order shipped yet?",
	"do you ship to Canada?",
	"what sizes does the blue jacket come in?",
	"can I return an item bought online in the store?",
	"is the store open on Sunday?",
	"do you have gift cards?",
};

static const char *const sg_endings[] = {
	"", "", "", " Gracias.", " Gracias!", " Muchas gracias 🙂", " Thanks!", " Thank you.",
	" 👍",
};

#define SG_N(a) (sizeof(a) / sizeof((a)[0]))

static int sg_usage(FILE *out)
{
	fprintf(out,
		"usage: streamgen --out DIR --messages N --conversations C [--zipf S (1.1)]\n"
		"                 [--rate MSGS_PER_S (100)] [--escalate FRACTION (0.02)]\n"
		"                 [--handback FRACTION (0.5)] [--seed N (1)]\n"
		"                 [--business whatsapp:+14155238886] [--account-sid AC...] [--max-mb M (64)]\n"
"                 [--tag-sid (end each Body with ref:<MessageSid>)]\n");
	return out == stdout ? 0 : SG_EXIT_USAGE;
}

static int sg_num(const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= lo) || !(d <= hi))
		return -1;
	*out = d;
	return 0;
}

static int sg_parse(int argc, char **argv, struct sg_opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		double d;
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return 1;
		if (!strcmp(a, "--tag-sid")) {
			o->tag_sid = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "streamgen: '%s' needs a value or is unknown\n", a);
			return -1;
		}
		i++;
		if (!strcmp(a, "--out")) {
			o->out = v;
		} else if (!strcmp(a, "--business")) {
			o->business = v;
		} else if (!strcmp(a, "--account-sid")) {
			o->account = v;
		} else if (!strcmp(a, "--messages") && sg_num(v, 0, 1e9, &d) == 0 && d == floor(d)) {
			o->messages = (unsigned long)d;
		} else if (!strcmp(a, "--conversations") && sg_num(v, 1, SG_CONV_MAX, &d) == 0 &&
			   d == floor(d)) {
			o->conversations = (unsigned long)d;
		} else if (!strcmp(a, "--zipf") && sg_num(v, 0, 10, &d) == 0) {
			o->zipf = d;
		} else if (!strcmp(a, "--rate") && sg_num(v, 1e-6, 1e9, &d) == 0) {
			o->rate = d;
		} else if (!strcmp(a, "--escalate") && sg_num(v, 0, 1, &d) == 0) {
			o->escalate = d;
		} else if (!strcmp(a, "--handback") && sg_num(v, 0, 1, &d) == 0) {
			o->handback = d;
		} else if (!strcmp(a, "--seed") && sg_num(v, 0, 1e18, &d) == 0 && d == floor(d)) {
			o->seed = (uint64_t)d;
		} else if (!strcmp(a, "--max-mb") && sg_num(v, 1, 65536, &d) == 0 && d == floor(d)) {
			o->max_mb = (int)d;
		} else {
			fprintf(stderr, "streamgen: bad option or value: %s %s\n", a, v);
			return -1;
		}
	}
	if (!o->out || !o->messages) {
		fprintf(stderr, "streamgen: --out and --messages are required\n");
		return -1;
	}
	if (strncmp(o->business, "whatsapp:+", 10) != 0) {
		fprintf(stderr, "streamgen: --business must be whatsapp:+E164\n");
		return -1;
	}
	return 0;
}

/* Zipf ranks: cdf[k] = P(rank <= k), so a uniform draw finds its rank by bisection. */
static double *sg_zipf_cdf(unsigned long n, double s)
{
	double *cdf = xmalloc(n * sizeof(*cdf)), sum = 0;
	for (unsigned long k = 0; k < n; k++) {
		sum += 1.0 / pow((double)(k + 1), s);
		cdf[k] = sum;
	}
	for (unsigned long k = 0; k < n; k++)
		cdf[k] /= sum;
	return cdf;
}

static uint32_t sg_zipf(const double *cdf, unsigned long n)
{
	double u = sg_unit();
	unsigned long lo = 0, hi = n - 1;
	while (lo < hi) {
		unsigned long mid = lo + (hi - lo) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (uint32_t)lo;
}

static int sg_rec_cmp(const void *a, const void *b)
{
	const struct sg_rec *x = a, *y = b;
	if (x->t_ms != y->t_ms)
		return x->t_ms < y->t_ms ? -1 : 1;
	/* A hand-back placed at a message's time still comes after it. */
	return (x->msg < 0) - (y->msg < 0);
}

/* The Twilio inbound-message webhook of message i (body malloc'd). */
static char *sg_message_body(const struct sg_opts *o, const struct sg_rec *r, uint64_t sid_hi)
{
	char sid[35], from[32], waid[16], text[256];
	char *body = NULL;

	snprintf(sid, sizeof(sid), "SM%016llx%016llx", (unsigned long long)sid_hi,
		 (unsigned long long)sg_rand());
	snprintf(waid, sizeof(waid), "1555%07u", r->conv);
	snprintf(from, sizeof(from), "whatsapp:+%s", waid);
	if (r->escalation)
		snprintf(text, sizeof(text), "%s%s%s", sg_greetings[sg_below(SG_N(sg_greetings))],
			 SG_ESCALATION, sg_below(2) ? ", por favor" : "");
	else
		snprintf(text, sizeof(text), "%s%s%s", sg_greetings[sg_below(SG_N(sg_greetings))],
			 sg_questions[sg_below(SG_N(sg_questions))],
			 sg_endings[sg_below(SG_N(sg_endings))]);
	if (o->tag_sid) {
		size_t n = strlen(text);
		snprintf(text + n, sizeof(text) - n, " ref:%s", sid);
	}
	/* Parameter order as Twilio posts it. */
	form_append(&body, "SmsMessageSid", sid);
	form_append(&body, "NumMedia", "0");
	form_append(&body, "ProfileName", sg_names[sg_mix(r->conv) % SG_N(sg_names)]);
	form_append(&body, "MessageType", "text");
	form_append(&body, "SmsSid", sid);
	form_append(&body, "WaId", waid);
	form_append(&body, "SmsStatus", "received");
	form_append(&body, "Body", text);
	form_append(&body, "To", o->business);
	form_append(&body, "NumSegments", "1");
	form_append(&body, "ReferralNumMedia", "0");
	form_append(&body, "MessageSid", sid);
	form_append(&body, "AccountSid", o->account);
	form_append(&body, "From", from);
	form_append(&body, "ApiVersion", "2010-04-01");
	return body;
}

int main(int argc, char **argv)
{
	struct sg_opts o = { .messages = 0, .conversations = 100, .zipf = 1.1, .rate = 100,
			     .escalate = 0.02, .handback = 0.5, .seed = 1,
			     .business = "whatsapp:+14155238886",
			     .account = "AC00000000000000000000000000000000", .max_mb = 64 };
	struct capture_writer *w = NULL;
	double *cdf = NULL;
	uint32_t *conv_of = NULL, *count = NULL, *active = NULL;
	int64_t *esc_at = NULL;
	double *next_t = NULL;
	bool *hb = NULL;
	struct sg_rec *recs = NULL;
	int rc = 1;

	log_init("streamgen", LOG_WARN, true);
	int pr = sg_parse(argc, argv, &o);
	if (pr != 0)
		return sg_usage(pr > 0 ? stdout : stderr);
	sg_state = sg_mix(o.seed);

	unsigned long n = o.messages, c = o.conversations;
	cdf = sg_zipf_cdf(c, o.zipf);
	conv_of = xcalloc(n, sizeof(*conv_of));
	count = xcalloc(c, sizeof(*count));
	for (unsigned long i = 0; i < n; i++)
		count[conv_of[i] = sg_zipf(cdf, c)]++;

	/* Escalating conversations: a share of all, drawn among those that write. */
	unsigned long nactive = 0;
	active = xcalloc(c, sizeof(*active));
	for (unsigned long k = 0; k < c; k++)
		if (count[k])
			active[nactive++] = (uint32_t)k;
	unsigned long nesc = (unsigned long)llround(o.escalate * (double)c);
	if (nesc > nactive)
		nesc = nactive;
	esc_at = xmalloc(c * sizeof(*esc_at));
	for (unsigned long k = 0; k < c; k++)
		esc_at[k] = -1;
	for (unsigned long k = 0; k < nesc; k++) {
		unsigned long j = k + sg_below(nactive - k); /* partial Fisher-Yates */
		uint32_t t = active[k];
		active[k] = active[j];
		active[j] = t;
		esc_at[active[k]] = (int64_t)sg_below(count[active[k]]);
	}
	/* Hand-backs go to the first nhb of them (already in random order). */
	unsigned long nhb = (unsigned long)llround(o.handback * (double)nesc);
	hb = xcalloc(c, sizeof(*hb));
	for (unsigned long k = 0; k < nhb; k++)
		hb[active[k]] = true;

	/* Arrivals, and which message of its conversation each one is. */
	recs = xcalloc(n + nhb, sizeof(*recs));
	memset(count, 0, c * sizeof(*count));
	double t = 0;
	for (unsigned long i = 0; i < n; i++) {
		uint32_t cv = conv_of[i];
		recs[i] = (struct sg_rec){ .t_ms = t, .conv = cv, .msg = (int64_t)i,
					   .escalation = esc_at[cv] == (int64_t)count[cv] };
		count[cv]++;
		t += -log(1.0 - sg_unit()) / o.rate * 1000.0;
	}
	/* A hand-back comes halfway between the escalation and the
	 * conversation's next message, or one mean gap after the escalation. */
	next_t = xmalloc(c * sizeof(*next_t));
	for (unsigned long k = 0; k < c; k++)
		next_t[k] = -1;
	size_t nrec = n;
	for (unsigned long i = n; i-- > 0;) {
		uint32_t cv = recs[i].conv;
		if (recs[i].escalation && hb[cv])
			recs[nrec++] = (struct sg_rec){
				.t_ms = next_t[cv] >= 0 ? (recs[i].t_ms + next_t[cv]) / 2
							: recs[i].t_ms + 1000.0 / o.rate,
				.conv = cv, .msg = -1 };
		next_t[cv] = recs[i].t_ms;
	}
	qsort(recs, nrec, sizeof(*recs), sg_rec_cmp);

	if (!(w = capture_open(o.out, (size_t)o.max_mb * 1024 * 1024)))
		goto fail;
	uint64_t start = clock_wall_ms(), sid_base = sg_mix(o.seed ^ 0x5a5a5a5a5a5a5a5aull);
	size_t bytes = 0;
	for (size_t i = 0; i < nrec; i++) {
		const struct sg_rec *r = &recs[i];
		char *body = r->msg >= 0
			? sg_message_body(&o, r, sg_mix(sid_base + (uint64_t)r->msg))
			: xasprintf("{\"address\":\"whatsapp:+1555%07u\"}", r->conv);
		size_t len = strlen(body);
		int arc = capture_append(w, start + (uint64_t)llround(r->t_ms),
					 r->msg >= 0 ? "/twilio/messages" : "/admin/handback", body, len);
		free(body);
		if (arc < 0) {
			fprintf(stderr, "streamgen: cannot write the capture into %s: %s\n", o.out,
				strerror(errno));
			goto fail;
		}
		bytes += len;
	}
	printf("streamgen: %lu messages from %lu conversations (%lu write, zipf %.2f), "
	       "%lu escalations, %lu handbacks: %zu records over %.1f s of arrivals "
	       "(%.1f msgs/s), %zu KiB of bodies, into %s\n",
	       n, c, nactive, o.zipf, nesc, nhb, nrec, nrec ? recs[nrec - 1].t_ms / 1000.0 : 0.0,
	       o.rate, bytes / 1024, o.out);
	rc = fflush(stdout) == 0 ? 0 : 1;
fail:
	capture_close(&w);
	free(cdf);
	free(conv_of);
	free(count);
	free(active);
	free(esc_at);
	free(next_t);
	free(hb);
	free(recs);
	return rc;
}
