/*
 * CService — the process and socket calls a long-running service makes around
 * its listeners: probing a Unix socket path for a live listener, systemd's
 * notification datagram (sd_notify(3)), checking descriptors inherited through
 * socket activation (sd_listen_fds(3)), and running a captive command through
 * /bin/sh (nbdkit-captive(1)).
 *
 * Every function returns 0 (or a documented non-negative value) on success and
 * -errno on failure; none of them reads or leaves errno for its caller. Every
 * function is safe to call with any argument values (NULL strings are EINVAL).
 */
#ifndef CSERVICE_H
#define CSERVICE_H

#include <stdint.h>

/** What cservice_probe_unix_socket found at a path. */
enum {
    CSERVICE_PROBE_ABSENT = 0,      /* nothing at the path */
    CSERVICE_PROBE_STALE = 1,       /* a socket file nobody accepts on (ECONNREFUSED) */
    CSERVICE_PROBE_LIVE = 2,        /* a socket another process listens on */
    CSERVICE_PROBE_NOT_SOCKET = 3,  /* something that is not a socket */
};

/**
 * Looks at a Unix socket path before binding it: lstat(2), then a non-blocking
 * connect(2). A connection that is accepted or pending (EAGAIN: the listener's
 * backlog is full) means LIVE; ECONNREFUSED means STALE. Returns a
 * CSERVICE_PROBE_* value or -errno (-ENAMETOOLONG when the path does not fit
 * sockaddr_un).
 */
int cservice_probe_unix_socket(const char *path);

/**
 * Sends one datagram `message` to the AF_UNIX socket `socket_path` (the value of
 * NOTIFY_SOCKET; a leading '@' names an abstract socket, as sd_notify(3) says).
 * 0 or -errno.
 */
int cservice_notify(const char *socket_path, const char *message);

/** Address families cservice_listening_socket reports. */
enum {
    CSERVICE_FAMILY_UNIX = 1,
    CSERVICE_FAMILY_INET = 2,
    CSERVICE_FAMILY_INET6 = 3,
};

/**
 * Checks that `fd` is a listening stream socket (SO_TYPE SOCK_STREAM,
 * SO_ACCEPTCONN), as sd_is_socket(3) does, and marks it close-on-exec (sd_listen_fds(3)
 * does the same for every descriptor it hands out). Returns a CSERVICE_FAMILY_*
 * value, -ENOTSOCK for a descriptor that is not a socket, -EINVAL for a socket
 * that is not a listening stream socket or of another family, or -errno.
 */
int cservice_listening_socket(int fd);

/**
 * Starts `/bin/sh -c command` with environment `envp` (NULL-terminated
 * "NAME=value" strings), every signal at its default disposition and an empty
 * signal mask (a server that ignores SIGINT/SIGTERM/SIGPIPE must not pass that
 * on), and no descriptor but 0, 1 and 2. The child's pid goes to *pid. 0 or -errno.
 */
int cservice_spawn_shell(const char *command, char *const envp[], int32_t *pid);

/**
 * Waits for child `pid` to end (waitpid(2), EINTR retried). *code is its exit
 * status, or 128 + the signal number when a signal ended it (what a shell and
 * nbdkit report); *signal_number is that signal or 0. 0 or -errno.
 */
int cservice_wait_child(int32_t pid, int32_t *code, int32_t *signal_number);

/**
 * Blocks `count` signals in the calling thread (pthread_sigmask(3)); threads it
 * creates afterwards inherit the mask. Called before any other thread exists, a
 * signal is then never delivered to a handler: it stays pending until
 * cservice_wait_signal takes it, so none is lost in a window where no handler
 * is installed yet. 0 or -errno.
 */
int cservice_block_signals(const int *signals, int count);

/** sigwait(3) for one of `count` (blocked) signals: its number, or -errno. */
int cservice_wait_signal(const int *signals, int count);

/** kill(2): 0 or -errno. */
int cservice_signal_child(int32_t pid, int signal_number);

#endif
