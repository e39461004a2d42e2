/*
 * The system-call sequences behind berth's OS module (core/os/sys.ts), free of Node-API so
 * each reads as the kernel interface it drives. Every function runs on a worker thread,
 * never on Node's event loop; it returns 0 or an errno, and on failure names the step that
 * failed in `step` (a static string such as "LOOP_CONFIGURE" or "open /dev/loop-control").
 * File descriptors are opened O_CLOEXEC and closed on every path.
 */
#ifndef BERTH_OPS_H
#define BERTH_OPS_H

#include <stdint.h>
#include <sys/mount.h>

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#define MOUNT_ATTR__ATIME 0x00000070
#define MOUNT_ATTR_RELATIME 0x00000000
#define MOUNT_ATTR_NOATIME 0x00000010
#define MOUNT_ATTR_STRICTATIME 0x00000020
#define MOUNT_ATTR_NODIRATIME 0x00000080
#endif

/* Flags a filesystem mount may carry (no MS_BIND / MS_MOVE / MS_REMOUNT / propagation). */
#define BERTH_MOUNT_FLAGS                                                                          \
  (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME |      \
   MS_STRICTATIME | MS_SILENT)
/* Attributes a bind mount may set or clear. */
#define BERTH_BIND_ATTRS                                                                           \
  (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |                  \
   MOUNT_ATTR__ATIME | MOUNT_ATTR_NODIRATIME)
/* umount2 flags berth uses. */
#define BERTH_UMOUNT_FLAGS (MNT_DETACH | UMOUNT_NOFOLLOW)

/* FS_IOC_SHUTDOWN (xfs, ext4, btrfs, f2fs): not in every linux/fs.h yet. */
#ifndef FS_IOC_SHUTDOWN
#define FS_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#endif
#define BERTH_SHUTDOWN_DEFAULT 0u    /* flush data and log, then shut down */
#define BERTH_SHUTDOWN_LOGFLUSH 1u   /* flush the log only, then shut down */
#define BERTH_SHUTDOWN_NOLOGFLUSH 2u /* shut down at once, flush nothing */

#define BERTH_LOOP_MAJOR 7
/* How often attach asks for another free device when another process took the one it got. */
#define BERTH_LOOP_ATTACH_TRIES 64

int berth_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
                const char *data, const char **step);
int berth_bind(const char *source, const char *target, unsigned int attr_set, unsigned int attr_clr,
               const char **step);
/*
 * A bind of `source` at `target` that first makes the target when it is missing: a
 * directory (kind BERTH_TARGET_DIR) or an empty file (BERTH_TARGET_FILE, for a block
 * device). The target's directory and the target are opened with no symbolic link anywhere
 * in their paths (openat2 RESOLVE_NO_SYMLINKS) and the target is made relative to that
 * directory, so nothing is ever made, or bound, through a link. An existing target must be
 * of the kind asked. `created` is 1 when this call made the target; a target it made is
 * removed again when the bind fails. ENOSYS (step "openat2") on kernels without openat2 or
 * the new mount API: the caller takes its step-by-step way.
 */
#define BERTH_TARGET_DIR 1
#define BERTH_TARGET_FILE 2
int berth_bind_create(const char *source, const char *target, unsigned int attr_set,
                      unsigned int attr_clr, int kind, int *created, const char **step);
int berth_umount(const char *target, int flags, const char **step);
/*
 * umount2(target, 0), then the target itself removed when it is an empty directory or an
 * empty regular file, found with no symbolic link in its path: what berth made for a
 * consumer and takes away with its bind. Only the unmount can fail; a target that is not
 * empty, not there, or still a mount point stays. `removed` says whether it went.
 */
int berth_umount_remove(const char *target, int *removed, const char **step);

/* `device` receives "/dev/loopN" (at least 32 bytes); `existing` is 1 when the image was
 * already attached (by dev/ino) and that device is returned instead of a second one. */
int berth_loop_attach(const char *image, int read_only, char *device, int *existing,
                      const char **step);
int berth_loop_detach(const char *device, const char **step);
int berth_loop_set_capacity(const char *device, const char **step);

int berth_blk_size(const char *device, uint64_t *bytes, const char **step);
int berth_blk_ro_get(const char *device, int *ro, const char **step);
int berth_blk_ro_set(const char *device, int ro, const char **step);

/* Shuts down the filesystem mounted at `mountpoint` (its root; with check_dev, only when its
 * st_dev is dev_major:dev_minor). */
int berth_fs_shutdown(const char *mountpoint, uint32_t how, int check_dev, uint32_t dev_major,
                      uint32_t dev_minor, const char **step);

struct berth_statfs {
  uint64_t type, bsize, frsize, blocks, bfree, bavail, files, ffree, namelen, flags;
};
int berth_statfs(const char *path, struct berth_statfs *out, const char **step);

#endif
