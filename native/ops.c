/*
 * System-call sequences for mounts, loop devices, block devices and fencing (see ops.h).
 * Linux only; needs LOOP_CONFIGURE (Linux 5.8) and uses the new mount API (open_tree,
 * mount_setattr, move_mount: Linux 5.12; openat2: 5.6) for bind mounts when the kernel has
 * it, mount(2) otherwise.
 */
#define _GNU_SOURCE
#include "ops.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef RESOLVE_NO_SYMLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

/* Sets *step and returns the current errno (for "if (call < 0) return fail(...)"). */
static int fail(const char **step, const char *what) {
  int e = errno;
  *step = what;
  return e ? e : EIO;
}

static void close_keep_errno(int fd) {
  int e = errno;
  if (fd >= 0) close(fd);
  errno = e;
}

int berth_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
                const char *data, const char **step) {
  if (flags & ~(unsigned long)BERTH_MOUNT_FLAGS) {
    *step = "mount flags";
    return EINVAL;
  }
  if (mount(source, target, fstype, flags, data) < 0) return fail(step, "mount");
  return 0;
}

/* MS_* flags of the mount at `path` as statvfs reports them (for the classic remount). */
static unsigned long current_ms_flags(const char *path) {
  struct statvfs v;
  if (statvfs(path, &v) < 0) return 0;
  unsigned long f = 0;
  if (v.f_flag & ST_RDONLY) f |= MS_RDONLY;
  if (v.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (v.f_flag & ST_NODEV) f |= MS_NODEV;
  if (v.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (v.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (v.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (v.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static unsigned long attrs_to_ms(unsigned int a) {
  unsigned long f = 0;
  if (a & MOUNT_ATTR_RDONLY) f |= MS_RDONLY;
  if (a & MOUNT_ATTR_NOSUID) f |= MS_NOSUID;
  if (a & MOUNT_ATTR_NODEV) f |= MS_NODEV;
  if (a & MOUNT_ATTR_NOEXEC) f |= MS_NOEXEC;
  if (a & MOUNT_ATTR_NODIRATIME) f |= MS_NODIRATIME;
  return f;
}

/*
 * Kernels without the new mount API: bind, then remount the bind with its current flags
 * changed as asked (two steps: a crash between them leaves the plain bind, which the
 * caller's reconciliation sees as not showing the right flags and redoes).
 */
static int bind_classic(const char *source, const char *target, unsigned int set, unsigned int clr,
                        const char **step) {
  if (mount(source, target, NULL, MS_BIND, NULL) < 0) return fail(step, "mount (bind)");
  unsigned long f = (current_ms_flags(target) & ~attrs_to_ms(clr)) | attrs_to_ms(set);
  if (clr & MOUNT_ATTR__ATIME) {
    f &= ~(unsigned long)(MS_NOATIME | MS_RELATIME | MS_STRICTATIME);
    if ((set & MOUNT_ATTR__ATIME) == MOUNT_ATTR_NOATIME) f |= MS_NOATIME;
    else if ((set & MOUNT_ATTR__ATIME) == MOUNT_ATTR_STRICTATIME) f |= MS_STRICTATIME;
    else f |= MS_RELATIME;
  }
  if (mount("none", target, NULL, MS_REMOUNT | MS_BIND | f, NULL) < 0) {
    int e = fail(step, "mount (remount bind)");
    umount2(target, 0); /* take the half-made bind back down */
    return e;
  }
  return 0;
}

#if defined(SYS_open_tree) && defined(SYS_mount_setattr) && defined(SYS_move_mount)
/*
 * A newer system call the kernel lacks (ENOSYS), or one a seccomp profile refuses as a
 * whole (Docker's default profile answers EPERM for calls it does not list, such as
 * mount_setattr in Docker 20.10): berth then takes the older way. A real lack of privilege
 * fails there again, with mount(2)'s EPERM.
 */
static int filtered(int e) {
  return e == ENOSYS || e == EPERM;
}

/*
 * The target as a descriptor, resolved by the kernel with no symbolic link anywhere in the
 * path (openat2 RESOLVE_NO_SYMLINKS, Linux 5.6): the bind lands on the path berth checked,
 * even if a component is swapped for a link after the check. -1 with errno ENOSYS when the
 * kernel has no openat2 or a seccomp profile refuses it (then the path itself is used).
 */
static int open_target(const char *target) {
#ifdef SYS_openat2
  struct {
    uint64_t flags, mode, resolve;
  } how = {O_PATH | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  return (int)syscall(SYS_openat2, AT_FDCWD, target, &how, sizeof how);
#else
  (void)target;
  errno = ENOSYS;
  return -1;
#endif
}

/* Attaches the detached tree `fd` at `target` (refusing symbolic links on the way). */
static int attach_tree(int fd, const char *target, const char **step) {
  int tfd = open_target(target);
  if (tfd < 0 && !filtered(errno)) return fail(step, "openat2 the target (no symbolic links)");
  int rc = tfd >= 0
               ? (int)syscall(SYS_move_mount, fd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
               : (int)syscall(SYS_move_mount, fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
  int e = rc < 0 ? fail(step, "move_mount") : 0;
  if (tfd >= 0) close(tfd);
  return e;
}
#endif

int berth_bind(const char *source, const char *target, unsigned int attr_set, unsigned int attr_clr,
               const char **step) {
  if ((attr_set | attr_clr) & ~(unsigned int)BERTH_BIND_ATTRS) {
    *step = "bind attributes";
    return EINVAL;
  }
#if defined(SYS_open_tree) && defined(SYS_mount_setattr) && defined(SYS_move_mount)
  /*
   * A detached copy of the source gets its flags before it is attached, so the target never
   * shows the bind without them (not even to a crash between two calls): a process killed
   * before move_mount leaves nothing, as the detached tree dies with its descriptor.
   */
  int fd = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) {
    if (filtered(errno)) return bind_classic(source, target, attr_set, attr_clr, step);
    return fail(step, "open_tree");
  }
  if (attr_set != 0 || attr_clr != 0) {
    struct {
      uint64_t attr_set, attr_clr, propagation, userns_fd;
    } attr = {attr_set, attr_clr, 0, 0};
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
      int e = errno;
      close(fd);
      if (filtered(e)) return bind_classic(source, target, attr_set, attr_clr, step);
      errno = e;
      return fail(step, "mount_setattr");
    }
  }
  int rc = attach_tree(fd, target, step);
  close(fd);
  return rc;
#else
  return bind_classic(source, target, attr_set, attr_clr, step);
#endif
}

#ifdef SYS_openat2
/*
 * The directory holding `target`, opened (O_PATH) with no symbolic link anywhere in its path
 * (openat2 RESOLVE_NO_SYMLINKS), and in *base the target's name in it. -1 with errno set:
 * EINVAL for a target with no name of its own ("/", "x/.", "x/..").
 */
static int open_parent(const char *target, const char **base) {
  const char *slash = strrchr(target, '/');
  *base = slash ? slash + 1 : "";
  if (!slash || !**base || strcmp(*base, ".") == 0 || strcmp(*base, "..") == 0) {
    errno = EINVAL;
    return -1;
  }
  char parent[PATH_MAX];
  size_t n = slash == target ? 1 : (size_t)(slash - target);
  memcpy(parent, target, n);
  parent[n] = 0;
  struct {
    uint64_t flags, mode, resolve;
  } how = {O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  return (int)syscall(SYS_openat2, AT_FDCWD, parent, &how, sizeof how);
}
#endif

int berth_bind_create(const char *source, const char *target, unsigned int attr_set,
                      unsigned int attr_clr, int kind, int *created, const char **step) {
  *created = 0;
  if ((attr_set | attr_clr) & ~(unsigned int)BERTH_BIND_ATTRS) {
    *step = "bind attributes";
    return EINVAL;
  }
  if (kind != BERTH_TARGET_DIR && kind != BERTH_TARGET_FILE) {
    *step = "target kind";
    return EINVAL;
  }
#if defined(SYS_openat2) && defined(SYS_open_tree) && defined(SYS_mount_setattr) && defined(SYS_move_mount)
  const char *base;
  int pfd = open_parent(target, &base);
  if (pfd < 0) {
    if (filtered(errno)) {
      *step = "openat2";
      return ENOSYS;
    }
    return fail(step, "openat2 the target's directory (no symbolic links)");
  }
  /* Made exclusively, so "created" is a fact; neither call follows a link at `base`. */
  int rc = 0;
  if (kind == BERTH_TARGET_DIR) {
    if (mkdirat(pfd, base, 0777) == 0) *created = 1;
    else if (errno != EEXIST) rc = fail(step, "mkdirat");
  } else {
    int f = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f >= 0) {
      close(f);
      *created = 1;
    } else if (errno != EEXIST) {
      rc = fail(step, "openat (create the target file)");
    }
  }
  struct {
    uint64_t flags, mode, resolve;
  } at_target = {O_PATH | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  int tfd = rc ? -1 : (int)syscall(SYS_openat2, pfd, base, &at_target, sizeof at_target);
  if (!rc && tfd < 0) rc = fail(step, "openat2 the target (no symbolic links)");
  if (!rc) {
    struct stat st;
    if (fstat(tfd, &st) < 0) {
      rc = fail(step, "fstat the target");
    } else if (kind == BERTH_TARGET_DIR ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
      *step = "target kind";
      rc = kind == BERTH_TARGET_DIR ? ENOTDIR : EISDIR;
    }
  }
  if (!rc) {
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0) {
      rc = fail(step, "open_tree");
    } else {
      struct {
        uint64_t attr_set, attr_clr, propagation, userns_fd;
      } attr = {attr_set, attr_clr, 0, 0};
      if ((attr_set != 0 || attr_clr != 0) &&
          syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        rc = fail(step, "mount_setattr");
      } else if (syscall(SYS_move_mount, fd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
        rc = fail(step, "move_mount");
      }
      close(fd);
    }
  }
  if (tfd >= 0) close(tfd);
  if (rc && *created) {
    unlinkat(pfd, base, kind == BERTH_TARGET_DIR ? AT_REMOVEDIR : 0);
    *created = 0;
  }
  close(pfd);
  return rc;
#else
  (void)source;
  (void)target;
  *step = "openat2";
  return ENOSYS;
#endif
}

int berth_umount_remove(const char *target, int *removed, const char **step) {
  *removed = 0;
  if (umount2(target, 0) < 0) return fail(step, "umount2");
#ifdef SYS_openat2
  const char *base;
  int pfd = open_parent(target, &base);
  if (pfd < 0) return 0;
  if (unlinkat(pfd, base, AT_REMOVEDIR) == 0) {
    *removed = 1;
  } else if (errno == ENOTDIR) {
    struct stat st;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 &&
        unlinkat(pfd, base, 0) == 0)
      *removed = 1;
  }
  close(pfd);
#endif
  return 0;
}

int berth_umount(const char *target, int flags, const char **step) {
  if (flags & ~BERTH_UMOUNT_FLAGS) {
    *step = "umount2 flags";
    return EINVAL;
  }
  if (umount2(target, flags) < 0) return fail(step, "umount2");
  return 0;
}

/* Reads one sysfs attribute into buf without its trailing newline; -1 when unreadable. */
static int read_attr(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = 0;
  if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
  return 0;
}

/*
 * The loop device already backed by the file `st` describes, found the way losetup
 * --nooverlap does: sysfs names the candidates by path, LOOP_GET_STATUS64 confirms the
 * device and inode. 1 and `device` set when found.
 */
static int find_attached(const char *image, const struct stat *st, char *device) {
  DIR *dir = opendir("/sys/block");
  if (!dir) return 0;
  int found = 0;
  struct dirent *e;
  char path[PATH_MAX + 64], backing[PATH_MAX + 16];
  while (!found && (e = readdir(dir)) != NULL) {
    if (strncmp(e->d_name, "loop", 4) != 0 || !isdigit((unsigned char)e->d_name[4]) ||
        strlen(e->d_name) > 20)
      continue;
    snprintf(path, sizeof path, "/sys/block/%s/loop/backing_file", e->d_name);
    if (read_attr(path, backing, sizeof backing) < 0 || strcmp(backing, image) != 0) continue;
    snprintf(path, sizeof path, "/dev/%s", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct loop_info64 info;
    memset(&info, 0, sizeof info);
    if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && info.lo_inode == (uint64_t)st->st_ino &&
        info.lo_device == (uint64_t)st->st_dev) {
      snprintf(device, 32, "/dev/%.20s", e->d_name);
      found = 1;
    }
    close(fd);
  }
  closedir(dir);
  return found;
}

/* Binds `backing_fd` to a free loop device, retrying when another process takes it first. */
static int configure_free(int backing_fd, const char *image, int read_only, char *device,
                          const char **step) {
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) return fail(step, "open /dev/loop-control");
  struct loop_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.fd = (uint32_t)backing_fd;
  cfg.info.lo_flags = read_only ? LO_FLAGS_READ_ONLY : 0;
  strncpy((char *)cfg.info.lo_file_name, image, LO_NAME_SIZE - 1);
  int rc = EBUSY;
  for (int i = 0; i < BERTH_LOOP_ATTACH_TRIES && rc == EBUSY; i++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      rc = fail(step, "LOOP_CTL_GET_FREE");
      break;
    }
    snprintf(device, 32, "/dev/loop%d", n);
    int fd = open(device, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
      rc = fail(step, "open the free loop device");
      break;
    }
    rc = ioctl(fd, LOOP_CONFIGURE, &cfg) == 0 ? 0 : fail(step, "LOOP_CONFIGURE");
    close(fd); /* EBUSY: another process configured this device since GET_FREE: ask again */
  }
  close(ctl);
  return rc;
}

int berth_loop_attach(const char *image, int read_only, char *device, int *existing,
                      const char **step) {
  *existing = 0;
  int fd = open(image, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return fail(step, "open the image");
  struct stat st;
  if (fstat(fd, &st) < 0) {
    close_keep_errno(fd);
    return fail(step, "fstat the image");
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    *step = "the image is not a regular file";
    return EINVAL;
  }
  /*
   * One attach per image at a time across processes: the check for an existing device and
   * the configure happen under an exclusive lock on a descriptor of the image that only this
   * call holds (not `fd`, which the loop device keeps: a lock on it would outlive a crash).
   */
  int lock = open(image, O_RDONLY | O_CLOEXEC);
  if (lock < 0 || flock(lock, LOCK_EX) < 0) {
    int e = fail(step, "flock the image");
    close_keep_errno(lock);
    close(fd);
    return e;
  }
  int rc = 0;
  if (find_attached(image, &st, device)) *existing = 1;
  else rc = configure_free(fd, image, read_only, device, step);
  close(lock);
  close(fd);
  return rc;
}

/* Opens a block device read-only and checks its type (and major, when major >= 0). */
static int open_block(const char *device, int major_wanted, const char **step) {
  int fd = open(device, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *step = "open the device";
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode) ||
      (major_wanted >= 0 && (int)major(st.st_rdev) != major_wanted)) {
    close(fd);
    *step = major_wanted == BERTH_LOOP_MAJOR ? "not a loop device" : "not a block device";
    errno = ENOTBLK;
    return -1;
  }
  return fd;
}

static int device_ioctl(const char *device, int major_wanted, unsigned long req, void *arg,
                        const char *what, const char **step) {
  int fd = open_block(device, major_wanted, step);
  if (fd < 0) return errno;
  int rc = ioctl(fd, req, arg) < 0 ? fail(step, what) : 0;
  close(fd);
  return rc;
}

int berth_loop_detach(const char *device, const char **step) {
  return device_ioctl(device, BERTH_LOOP_MAJOR, LOOP_CLR_FD, 0, "LOOP_CLR_FD", step);
}

int berth_loop_set_capacity(const char *device, const char **step) {
  return device_ioctl(device, BERTH_LOOP_MAJOR, LOOP_SET_CAPACITY, 0, "LOOP_SET_CAPACITY", step);
}

int berth_blk_size(const char *device, uint64_t *bytes, const char **step) {
  return device_ioctl(device, -1, BLKGETSIZE64, bytes, "BLKGETSIZE64", step);
}

int berth_blk_ro_get(const char *device, int *ro, const char **step) {
  return device_ioctl(device, -1, BLKROGET, ro, "BLKROGET", step);
}

int berth_blk_ro_set(const char *device, int ro, const char **step) {
  return device_ioctl(device, -1, BLKROSET, &ro, "BLKROSET", step);
}

int berth_fs_shutdown(const char *mountpoint, uint32_t how, int check_dev, uint32_t dev_major,
                      uint32_t dev_minor, const char **step) {
  if (how > BERTH_SHUTDOWN_NOLOGFLUSH) {
    *step = "shutdown flags";
    return EINVAL;
  }
  int fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return fail(step, "open the mount point");
  /* The ioctl acts on whatever filesystem holds `fd`: refuse anything but a mount's root, so
   * an unmounted directory never shuts down the filesystem it lives on. */
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) < 0) {
    int e = fail(step, "statx the mount point");
    close(fd);
    return e;
  }
  if ((sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
      !(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
    close(fd);
    *step = "not a mount point";
    return EINVAL;
  }
  /* ...and anything but the filesystem the caller means (major:minor as mountinfo shows it). */
  if (check_dev && (sx.stx_dev_major != dev_major || sx.stx_dev_minor != dev_minor)) {
    close(fd);
    *step = "the mount point is not on the expected device";
    return EXDEV;
  }
  int rc = ioctl(fd, FS_IOC_SHUTDOWN, &how) < 0 ? fail(step, "FS_IOC_SHUTDOWN") : 0;
  close(fd);
  return rc;
}

int berth_statfs(const char *path, struct berth_statfs *out, const char **step) {
  struct statfs s;
  if (statfs(path, &s) < 0) return fail(step, "statfs");
  out->type = (uint64_t)s.f_type;
  out->bsize = (uint64_t)s.f_bsize;
  out->frsize = (uint64_t)s.f_frsize;
  out->blocks = (uint64_t)s.f_blocks;
  out->bfree = (uint64_t)s.f_bfree;
  out->bavail = (uint64_t)s.f_bavail;
  out->files = (uint64_t)s.f_files;
  out->ffree = (uint64_t)s.f_ffree;
  out->namelen = (uint64_t)s.f_namelen;
  out->flags = (uint64_t)s.f_flags;
  return 0;
}
