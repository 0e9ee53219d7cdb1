/* proc — process start-up shared by every baton binary; see proc.h. */
#include "proc.h"

#include "log.h"
#include "metrics.h"

volatile sig_atomic_t proc_stop;

static void proc_on_signal(int sig)
{
	(void)sig;
	proc_stop = 1;
}

int proc_start(struct config *cfg, int argc, char **argv, const char *prog,
	       const char *log_name, const char *usage)
{
	enum log_level lvl = LOG_INFO;

	if (config_from_args(cfg, argc, argv, prog, usage) == 1)
		return 1;
	log_level_parse(cfg->log_level, &lvl);
	log_init(log_name, lvl, cfg->log_mask_phone);
	metrics_init(log_name, cfg);

	struct sigaction sa = { .sa_handler = proc_on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}
