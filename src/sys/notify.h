#pragma once
/* The daemons' side of systemd's service notifications (sd_notify(3)), for the units in
 * deploy/systemd (Type=notify, NotifyAccess=main): readiness, reloads and stops. Each call
 * sends one datagram to $NOTIFY_SOCKET from the calling (main) process and does nothing when
 * the variable is unset, as for a daemon started by hand. The calls return 0 when sent or not
 * asked for, -errno when the datagram could not go out; a daemon goes on either way (systemd
 * then times the start or reload out and says so), so callers may ignore the result. */

/* READY=1 with STATUS= the formatted text: the daemon serves (its sockets are bound and its
 * first state is loaded), or serves again after a reload (taken or refused). */
int notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 with MONOTONIC_USEC= now (CLOCK_MONOTONIC, as Type=notify-reload expects), at
 * a SIGHUP before the configuration is read again; notify_ready() follows. */
int notify_reloading(void);

/* STOPPING=1: the daemon is shutting down on a signal. */
int notify_stopping(void);
