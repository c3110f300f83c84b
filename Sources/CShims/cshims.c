#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>
#include "cshims.h"

int bvm_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int bvm_spawn_close_from(posix_spawn_file_actions_t *actions, int lowfd) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np(actions, lowfd);
#else
    (void)actions; (void)lowfd;
    return 0;
#endif
}

int bvm_sync_range(int fd, long long offset, long long nbytes, int wait) {
    unsigned int flags = wait
        ? (SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)
        : SYNC_FILE_RANGE_WRITE;
    return sync_file_range(fd, (off64_t)offset, (off64_t)nbytes, flags);
}

int bvm_syncfs(int fd) { return syncfs(fd); }
