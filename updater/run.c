/* Child processes with captured output and a time limit. */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define MAX_ERR 4096

extern char **environ;

struct buf {
        char *data;
        size_t len, max;
        bool keep;
};

static int buf_append(struct buf *b, const char *p, size_t n) {
        if (!b->keep)
                return 0;
        size_t room = b->max > b->len ? b->max - b->len : 0;
        if (n > room)
                n = room;
        if (n == 0)
                return 0;
        char *d = realloc(b->data, b->len + n + 1);
        if (!d)
                return -ENOMEM;
        memcpy(d + b->len, p, n);
        b->data = d;
        b->len += n;
        d[b->len] = 0;
        return 0;
}

static long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static int run(char *const argv[], size_t max_out, char **ret_out, size_t *ret_out_len,
               int (*on_out)(void *, const void *, size_t), void *userdata, char **ret_err,
               unsigned timeout) {
        int out[2] = {-1, -1}, err[2] = {-1, -1};
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        pid_t pid;
        int r;

        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                r = negative_errno();
                closep(&out[0]), closep(&out[1]), closep(&err[0]), closep(&err[1]);
                return r;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        /* A process group of its own: on a timeout, what it started goes too (a shell's curl). */
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setpgroup(&attr, 0);
        /* The agent ignores SIGPIPE for itself; its children get the default back. */
        sigset_t defaults;
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGPIPE);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        r = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        close(out[1]);
        close(err[1]);
        _cleanup_close_ int fo = out[0], fe = err[0];
        if (r != 0)
                return -r;

        struct buf bo = {.max = max_out, .keep = ret_out != NULL};
        struct buf be = {.max = MAX_ERR, .keep = ret_err != NULL};
        long deadline = timeout ? now_ms() + (long)timeout * 1000 : 0;
        bool timed_out = false, reaped = false;
        int status = -1;
        int open_fds = 2;
        /* Once the child is reaped: how much more to read from each pipe. */
        size_t drain[2] = {SIZE_MAX, SIZE_MAX};
        while (open_fds > 0) {
                /* The child is watched as well as its output: what it started in the background
                 * (a daemon) may hold the pipes open long after it exited. Once it has, what is
                 * left in the pipes is read and the rest is not waited for: the child's own
                 * output is all in them by then, ahead of anything written later, so reading
                 * stops at what they held then (or sooner, when they are empty), however much
                 * a background process goes on writing. */
                int wait_ms = reaped ? 0 : 100;
                if (deadline && !reaped) {
                        long left = deadline - now_ms();
                        if (left <= 0) {
                                kill(-pid, SIGKILL);
                                timed_out = true;
                                break;
                        }
                        if (left < wait_ms)
                                wait_ms = (int)left;
                }
                struct pollfd p[2] = {{.fd = fo, .events = POLLIN}, {.fd = fe, .events = POLLIN}};
                int ready = poll(p, 2, wait_ms);
                if (ready < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (ready == 0 && reaped)
                        break;
                for (int i = 0; i < 2; i++) {
                        if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        char chunk[16384];
                        ssize_t n = read(p[i].fd, chunk, drain[i] < sizeof(chunk) ? drain[i]
                                                                                  : sizeof(chunk));
                        if (n < 0 && errno == EINTR)
                                continue;
                        bool done = n <= 0;
                        if (n > 0) {
                                if (drain[i] != SIZE_MAX)
                                        drain[i] -= (size_t)n;
                                if (i == 0 && on_out)
                                        done = on_out(userdata, chunk, (size_t)n) < 0;
                                else
                                        buf_append(i == 0 ? &bo : &be, chunk, (size_t)n);
                                done = done || drain[i] == 0;
                        }
                        if (done) {
                                if (i == 0)
                                        closep(&fo), fo = -1;
                                else
                                        closep(&fe), fe = -1;
                                open_fds--;
                        }
                }
                if (!reaped && waitpid(pid, &status, WNOHANG) == pid) {
                        reaped = true;
                        int *fds[2] = {&fo, &fe};
                        for (int i = 0; i < 2; i++) {
                                int queued = 0;
                                if (*fds[i] < 0)
                                        continue;
                                if (ioctl(*fds[i], FIONREAD, &queued) == 0 && queued > 0)
                                        drain[i] = (size_t)queued;
                                else {
                                        closep(fds[i]), *fds[i] = -1;
                                        open_fds--;
                                }
                        }
                }
        }
        /* The output can end long before the child does (it closed or redirected both): the
         * time limit holds for the wait too. */
        while (!reaped) {
                pid_t w = waitpid(pid, &status, deadline && !timed_out ? WNOHANG : 0);
                if (w == pid)
                        break;
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        status = -1;
                        break;
                }
                if (now_ms() >= deadline) {
                        kill(-pid, SIGKILL);
                        timed_out = true;
                        continue;
                }
                struct timespec ts = {.tv_nsec = 10 * 1000000L};
                nanosleep(&ts, NULL);
        }
        if (ret_out) {
                if (!bo.data)
                        bo.data = calloc(1, 1);
                *ret_out = bo.data;
                if (ret_out_len)
                        *ret_out_len = bo.len;
        }
        if (ret_err) {
                if (!be.data)
                        be.data = calloc(1, 1);
                *ret_err = be.data;
        }
        if (timed_out)
                return -ETIMEDOUT;
        if (status == -1 || WIFSIGNALED(status))
                return -EINTR;
        return WEXITSTATUS(status);
}

int run_program(char *const argv[], size_t max_out, char **ret_out, size_t *ret_out_len,
                char **ret_err, unsigned timeout) {
        return run(argv, max_out, ret_out, ret_out_len, NULL, NULL, ret_err, timeout);
}

int run_program_stream(char *const argv[], int (*on_out)(void *userdata, const void *p, size_t n),
                       void *userdata, char **ret_err, unsigned timeout) {
        return run(argv, 0, NULL, NULL, on_out, userdata, ret_err, timeout);
}

int run_shell(const char *command, char **ret_err, unsigned timeout) {
        char *argv[] = {(char *)"/bin/sh", (char *)"-c", (char *)command, NULL};
        return run_program(argv, 0, NULL, NULL, ret_err, timeout);
}
