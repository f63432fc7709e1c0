#ifndef RETURNPATH_CLINUX_H
#define RETURNPATH_CLINUX_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/veth.h>
#include <linux/fib_rules.h>
#include <linux/net_namespace.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>

// Flags the Glibc module hides behind _GNU_SOURCE, re-exported as plain constants.
static const int clinux_CLONE_NEWNET = 0x40000000;
static const unsigned long clinux_MS_BIND = 4096;
static const unsigned long clinux_MS_REC = 16384;
static const unsigned long clinux_MS_SHARED = 1 << 20;
static const unsigned long clinux_MS_SLAVE = 1 << 19;
static const int clinux_MNT_DETACH = 2;
static const unsigned int clinux_IFF_UP = 0x1;
static const unsigned int clinux_IFF_LOOPBACK = 0x8;
static const unsigned int clinux_IFF_LOWER_UP = 0x10000;
/// POSIX_SPAWN_SETSID (spawn.h, only under _GNU_SOURCE): the child starts a new session (setsid).
static const short clinux_POSIX_SPAWN_SETSID = 0x80;
/// SO_NETNS_COOKIE (asm-generic/socket.h, Linux 5.14+): the socket's namespace cookie.
#ifdef SO_NETNS_COOKIE
static const int clinux_SO_NETNS_COOKIE = SO_NETNS_COOKIE;
#else
static const int clinux_SO_NETNS_COOKIE = 71;
#endif

int clinux_setns(int fd, int nstype);
int clinux_unshare(int flags);
pid_t clinux_gettid(void);
int clinux_mount(const char *source, const char *target, const char *fstype,
                 unsigned long flags, const void *data);
int clinux_umount2(const char *target, int flags);
int clinux_pipe2(int fds[2], int flags);
/// pidfd_open(2) (Linux 5.3+): a descriptor that becomes readable when the process exits.
int clinux_pidfd_open(pid_t pid);
/// The calling thread's name (prctl PR_SET_NAME: at most 15 bytes are kept), as top and perf show it.
int clinux_set_thread_name(const char *name);
#include <sys/socket.h>
/// dl_iterate_phdr(3): calls `each` with the name (the path it was loaded from; "" for the executable) of every
/// object the dynamic loader has loaded into this process.
void clinux_loaded_objects(void (*each)(const char *name, void *context), void *context);
/// accept4(2) (GNU): the accepted socket gets `flags` (SOCK_NONBLOCK, SOCK_CLOEXEC) atomically.
int clinux_accept4(int fd, int flags);
#include <spawn.h>
/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+): close every descriptor from `from` up in the child.
int clinux_spawn_closefrom(posix_spawn_file_actions_t *actions, int from);

#endif
