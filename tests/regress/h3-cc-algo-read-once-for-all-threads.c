/* Regression: h3_cc_algo() cached its answer in a plain static that it set to -1 before
 * reading /proc/sys/net/ipv4/tcp_congestion_control; a second thread calling it meanwhile saw
 * -1 (not the "unread" mark) and returned it, an invalid ngtcp2 congestion control, to a
 * connection being made. Now it is read once through pthread_once. Each trial is a fresh
 * process (the answer is read once per process) whose 16 threads call it together. */
#include "../unit/test.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/h3/conn.h"

enum { THREADS = 16, TRIALS = 40 };

static pthread_barrier_t go;
static int got[THREADS];

static void *call(void *arg)
{
	int *out = arg;
	pthread_barrier_wait(&go);
	*out = h3_cc_algo();
	return NULL;
}

/* One trial in this (fresh) process: 0 if every thread got the same valid answer. */
static int trial(void)
{
	pthread_t t[THREADS];
	pthread_barrier_init(&go, NULL, THREADS);
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, call, &got[i]))
			return 2;
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < THREADS; i++)
		if (got[i] < 0 || got[i] != got[0])
			return 1;
	return 0;
}

static void test_every_thread_gets_the_answer(void **state)
{
	(void)state;
	unsetenv("PEAK_H3_CC"); /* the slow way: the host's choice read from /proc */
	for (int k = 0; k < TRIALS; k++) {
		pid_t p = fork();
		assert_true(p >= 0);
		if (p == 0)
			_exit(trial());
		int st = 0;
		assert_int_equal(waitpid(p, &st, 0), p);
		assert_true(WIFEXITED(st));
		if (WEXITSTATUS(st))
			fail_msg("trial %d: a thread got an invalid or different answer", k);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_thread_gets_the_answer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
