#ifndef BACKUP_VM_CSHIMS_H
#define BACKUP_VM_CSHIMS_H
#include <spawn.h>

/// pipe2(O_CLOEXEC): Swift's Glibc module does not export pipe2 (it needs _GNU_SOURCE). Creating both
/// ends close-on-exec atomically matters: jobs spawn ssh concurrently, and a pipe end leaked into
/// another job's child would keep our reader from ever seeing end-of-file.
int bvm_pipe_cloexec(int fds[2]);

/// posix_spawn_file_actions_addclosefrom_np(actions, 3) where glibc has it (2.34+): the child gets
/// nothing but stdin, stdout and stderr, whatever other threads opened without O_CLOEXEC.
int bvm_spawn_close_from(posix_spawn_file_actions_t *actions, int lowfd);


/// sync_file_range(2) (Linux; needs _GNU_SOURCE): `wait` 0 starts writeback of the range, 1 waits for
/// it to be on disk. Used to keep a long stream's dirty pages bounded and the final fsync short.
int bvm_sync_range(int fd, long long offset, long long nbytes, int wait);

/// syncfs(2) (Linux; needs _GNU_SOURCE): every dirty page and inode of the file system holding `fd`
/// written and committed in one go (one journal commit for many small files, where an fsync of each
/// costs one commit each).
int bvm_syncfs(int fd);
#endif
