#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <link.h>
#include <sys/socket.h>
#include "CLinux.h"

int clinux_setns(int fd, int nstype) { return setns(fd, nstype); }
int clinux_unshare(int flags) { return unshare(flags); }
pid_t clinux_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int clinux_mount(const char *source, const char *target, const char *fstype,
                 unsigned long flags, const void *data) {
    return mount(source, target, fstype, flags, data);
}
int clinux_umount2(const char *target, int flags) { return umount2(target, flags); }
int clinux_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int clinux_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
struct loaded_objects { void (*each)(const char *, void *); void *context; };
static int loaded_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct loaded_objects *walk = data;
    walk->each(info->dlpi_name ? info->dlpi_name : "", walk->context);
    return 0;
}
void clinux_loaded_objects(void (*each)(const char *name, void *context), void *context) {
    struct loaded_objects walk = { each, context };
    dl_iterate_phdr(loaded_object, &walk);
}
int clinux_accept4(int fd, int flags) { return accept4(fd, NULL, NULL, flags); }
int clinux_set_thread_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0); }
int clinux_spawn_closefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}
