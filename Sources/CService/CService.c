/* CService — see include/CService.h. */
#define _GNU_SOURCE
#include "CService.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Fills a sockaddr_un; '@' at the start names an abstract socket when `abstract_ok`. */
static int make_address(const char *path, int abstract_ok, struct sockaddr_un *sa, socklen_t *len) {
    if (path == NULL || path[0] == '\0') return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof(sa->sun_path)) return -ENAMETOOLONG;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n);
    if (abstract_ok && path[0] == '@') {
        sa->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int cservice_probe_unix_socket(const char *path) {
    struct sockaddr_un sa;
    socklen_t len;
    int r = make_address(path, 0, &sa, &len);
    if (r < 0) return r;
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? CSERVICE_PROBE_ABSENT : -errno;
    if (!S_ISSOCK(st.st_mode)) return CSERVICE_PROBE_NOT_SOCKET;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int result;
    if (connect(fd, (struct sockaddr *)&sa, len) == 0) {
        result = CSERVICE_PROBE_LIVE;
    } else if (errno == EAGAIN || errno == EINPROGRESS) {
        result = CSERVICE_PROBE_LIVE;
    } else if (errno == ECONNREFUSED) {
        result = CSERVICE_PROBE_STALE;
    } else {
        result = -errno;
    }
    close(fd);
    return result;
}

int cservice_notify(const char *socket_path, const char *message) {
    if (message == NULL) return -EINVAL;
    struct sockaddr_un sa;
    socklen_t len;
    int r = make_address(socket_path, 1, &sa, &len);
    if (r < 0) return r;
    /* sd_notify(3) also accepts vsock addresses ("vsock:CID:PORT"); only AF_UNIX here. */
    if (socket_path[0] != '/' && socket_path[0] != '@') return -EAFNOSUPPORT;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    size_t n = strlen(message);
    ssize_t sent;
    do {
        sent = sendto(fd, message, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    } while (sent < 0 && errno == EINTR);
    int result = sent < 0 ? -errno : ((size_t)sent == n ? 0 : -EMSGSIZE);
    close(fd);
    return result;
}

int cservice_listening_socket(int fd) {
    if (fd < 0) return -EBADF;
    int type = 0, accepting = 0;
    socklen_t l = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0) return -errno;
    l = sizeof(accepting);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &l) != 0) return -errno;
    if (type != SOCK_STREAM || !accepting) return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return -errno;
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) return -errno;
    switch (ss.ss_family) {
    case AF_UNIX: return CSERVICE_FAMILY_UNIX;
    case AF_INET: return CSERVICE_FAMILY_INET;
    case AF_INET6: return CSERVICE_FAMILY_INET6;
    default: return -EINVAL;
    }
}

extern char **environ;

int cservice_spawn_shell(const char *command, char *const envp[], int32_t *pid) {
    if (command == NULL || pid == NULL) return -EINVAL;
    posix_spawnattr_t attr;
    int r = posix_spawnattr_init(&attr);
    if (r != 0) return -r;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    r = posix_spawnattr_setsigdefault(&attr, &all);
    if (r == 0) r = posix_spawnattr_setsigmask(&attr, &none);
    if (r == 0) r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    if (r != 0) {
        posix_spawnattr_destroy(&attr);
        return -r;
    }
    /* Only standard input, output and error go to the command: not the server's
     * listening sockets, epoll instances or image files (glibc 2.34+). */
    posix_spawn_file_actions_t actions;
    r = posix_spawn_file_actions_init(&actions);
    if (r != 0) {
        posix_spawnattr_destroy(&attr);
        return -r;
    }
    r = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (r != 0) {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        return -r;
    }
    char *const argv[] = {"sh", "-c", (char *)command, NULL};
    pid_t child = 0;
    r = posix_spawn(&child, "/bin/sh", &actions, &attr, argv, envp != NULL ? envp : environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (r != 0) return -r;
    *pid = (int32_t)child;
    return 0;
}

int cservice_wait_child(int32_t pid, int32_t *code, int32_t *signal_number) {
    if (code == NULL || signal_number == NULL || pid <= 0) return -EINVAL;
    int status = 0;
    pid_t r;
    do {
        r = waitpid((pid_t)pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    if (WIFEXITED(status)) {
        *code = WEXITSTATUS(status);
        *signal_number = 0;
    } else if (WIFSIGNALED(status)) {
        *signal_number = WTERMSIG(status);
        *code = 128 + WTERMSIG(status);
    } else {
        return -ECHILD;
    }
    return 0;
}

int cservice_signal_child(int32_t pid, int signal_number) {
    if (pid <= 0) return -EINVAL;
    return kill((pid_t)pid, signal_number) == 0 ? 0 : -errno;
}

static int make_set(const int *signals, int count, sigset_t *set) {
    if (signals == NULL || count < 0) return -EINVAL;
    sigemptyset(set);
    for (int i = 0; i < count; i++) {
        if (sigaddset(set, signals[i]) != 0) return -errno;
    }
    return 0;
}

int cservice_block_signals(const int *signals, int count) {
    sigset_t set;
    int r = make_set(signals, count, &set);
    if (r < 0) return r;
    r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    return r == 0 ? 0 : -r;
}

int cservice_wait_signal(const int *signals, int count) {
    sigset_t set;
    int r = make_set(signals, count, &set);
    if (r < 0) return r;
    int sig = 0;
    do {
        r = sigwait(&set, &sig);
    } while (r == EINTR);
    return r == 0 ? sig : -r;
}
