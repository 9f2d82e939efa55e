#pragma once
/*
 * Work the pod's event loop hands to threads so it never waits on a disk flush or a peer:
 * the commit of finished PUTs (group commit, server.c) and a read-through's fetch from the
 * old owner during a migration. A queue of jobs, served by its own threads; a finished job
 * goes to a done list and the queue's eventfd becomes readable, so the loop picks it up
 * with its other events. A job is owned by whoever holds it: the loop until work_add, the
 * queue's threads until it is on the done list, the loop again after work_done.
 */
#include <pthread.h>
#include <stdbool.h>

struct work_job {
	struct work_job *next;
	int result; /* set by the queue's function */
};

struct work_queue;

/* Runs the jobs of batch (a list through next, in the order added) and sets each result.
 * Called on one of the queue's threads, never on two at once when the queue has one. */
typedef void (*work_fn)(struct work_queue *q, struct work_job *batch, void *arg);

struct work_queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work_job *todo, **todo_tail, *done;
	work_fn fn;
	void *arg;
	/* how many jobs one call of fn takes at most: 1 gives each thread its own job
	 * (fetches); more lets one call take all that waited (group commit) */
	unsigned batch_max;
	unsigned nthreads;
	pthread_t th[8];
	int efd; /* readable while the done list is not empty */
	bool stop;
};

/* Starts nthreads (1..8) threads running fn. Signals must already be blocked (the threads
 * inherit the mask). Returns 0 or -errno; on failure nothing runs and nothing is held. */
int work_start(struct work_queue *q, unsigned nthreads, unsigned batch_max, work_fn fn, void *arg);

/* Queues job; it comes back from work_done once run. */
void work_add(struct work_queue *q, struct work_job *job);

/* Queues the jobs of list (through next, NULL-terminated) together, in that order: a
 * thread that wakes finds them all (one batch, up to batch_max). */
void work_add_list(struct work_queue *q, struct work_job *list);

/* Takes the finished jobs (the list through next, oldest first, or NULL) and clears the
 * eventfd. For the loop's thread. */
struct work_job *work_done(struct work_queue *q);

/* Lets the threads finish the jobs queued, joins them and closes the eventfd; the jobs
 * finished but not taken stay on q->done for the caller. Safe on a queue never started
 * (zeroed) or whose start failed. */
void work_stop(struct work_queue *q);
