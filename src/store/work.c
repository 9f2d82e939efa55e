/* Job queues served by threads (work.h). */
#include "work.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void *work_main(void *arg)
{
	struct work_queue *q = arg;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->todo && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (!q->todo)
			break; /* stopping, and nothing left */
		struct work_job *batch = q->todo, *last = batch;
		for (unsigned n = 1; n < q->batch_max && last->next; n++)
			last = last->next;
		q->todo = last->next;
		if (!q->todo)
			q->todo_tail = &q->todo;
		last->next = NULL;
		pthread_mutex_unlock(&q->mu);
		q->fn(q, batch, q->arg);
		pthread_mutex_lock(&q->mu);
		/* the done list keeps the order the jobs finished in, oldest first */
		struct work_job **tail = &q->done;
		while (*tail)
			tail = &(*tail)->next;
		*tail = batch;
		uint64_t one = 1;
		(void)!write(q->efd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

int work_start(struct work_queue *q, unsigned nthreads, unsigned batch_max, work_fn fn, void *arg)
{
	int ret;
	*q = (struct work_queue){.fn = fn, .arg = arg, .batch_max = batch_max ? batch_max : 1};
	q->todo_tail = &q->todo;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd == -1) {
		ret = -errno;
		goto out;
	}
	if (nthreads < 1 || nthreads > sizeof(q->th) / sizeof(q->th[0])) {
		ret = -EINVAL;
		goto out;
	}
	for (; q->nthreads < nthreads; q->nthreads++)
		if ((ret = -pthread_create(&q->th[q->nthreads], NULL, work_main, q)))
			goto out;
	return 0;
out:
	work_stop(q);
	return ret;
}

void work_add(struct work_queue *q, struct work_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&q->mu);
	*q->todo_tail = job;
	q->todo_tail = &job->next;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void work_add_list(struct work_queue *q, struct work_job *list)
{
	if (!list)
		return;
	pthread_mutex_lock(&q->mu);
	*q->todo_tail = list;
	while (list->next)
		list = list->next;
	q->todo_tail = &list->next;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

struct work_job *work_done(struct work_queue *q)
{
	uint64_t v;
	(void)!read(q->efd, &v, sizeof(v));
	pthread_mutex_lock(&q->mu);
	struct work_job *d = q->done;
	q->done = NULL;
	pthread_mutex_unlock(&q->mu);
	return d;
}

void work_stop(struct work_queue *q)
{
	if (!q->fn)
		return; /* never started */
	pthread_mutex_lock(&q->mu);
	q->stop = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	for (unsigned i = 0; i < q->nthreads; i++)
		pthread_join(q->th[i], NULL);
	q->nthreads = 0;
	if (q->efd != -1)
		close(q->efd);
	q->efd = -1;
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	q->fn = NULL;
}
