// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/flexserve over flexserve_fake.ko (the pretend SPMC), as a VM's /init: loads the
 * module, checks every ioctl's validation and the lend/reclaim mapping rules (a lent
 * buffer faults SIGBUS in every process, maps again after reclaim with its data), closes
 * with memory the "SP" keeps (parked), unloads, powers off. Prints "TEST name: ok|FAIL"
 * and a summary line "TESTS passed=N failed=M".
 *
 * Build: aarch64-linux-gnu-gcc -static -O2 -I nw/linux -o init flexserve_test.c
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flexserve_uapi.h"

static int passed, failed;

#define CHECK(name, cond) do {						\
	int ok_ = (cond);						\
	printf("TEST %s: %s\n", name, ok_ ? "ok" : "FAIL");		\
	if (ok_)							\
		passed++;						\
	else								\
		failed++, printf("  errno %d (%s)\n", errno, strerror(errno)); \
} while (0)

/* ioctl, returning 0 or -errno. */
static int io(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? -errno : 0;
}

static int call_x0(int fd, unsigned long long x0)
{
	struct flexserve_ffa_call c = { .x = { x0 } };

	return io(fd, FLEXSERVE_IOC_FFA_CALL, &c);
}

/* Does touching p in a child process kill it with SIGBUS? */
static int child_sigbus(volatile char *p)
{
	int st;
	pid_t pid = fork();

	if (!pid) {
		(void)p[0];
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS;
}

static void tests(int fd)
{
	struct flexserve_info info;
	struct flexserve_ffa_call c = { .x = { 0xC400006F, 0x8001, 0, 1, 2, 3, 4, 5 } };
	char rx[8] = "";
	struct flexserve_buf_copy cp = { .addr = (unsigned long)rx, .len = 4 };
	struct flexserve_alloc a = { 0 }, big = { .pages = 32768 }, stuck = { .pages = 2 };
	struct flexserve_mem_send s = { .receiver = 0x8001, .kind = FLEXSERVE_LEND,
					 .access = FLEXSERVE_RW };
	struct flexserve_mem_reclaim rc = { 0 };
	int pipefd[2], st;
	char *p, *q;
	pid_t pid;

	CHECK("info", !io(fd, FLEXSERVE_IOC_INFO, &info) && info.ffa_version == 0x10002 &&
	      info.rxtx_size == 4096 && info.own_id == 0);
	CHECK("call RXTX_MAP refused", call_x0(fd, 0xC4000066) == -EINVAL);
	CHECK("call RXTX_UNMAP refused", call_x0(fd, 0x84000067) == -EINVAL);
	CHECK("call MEM_LEND refused", call_x0(fd, 0xC4000072) == -EINVAL);
	CHECK("call MEM_RECLAIM refused", call_x0(fd, 0x84000077) == -EINVAL);
	CHECK("call FRAG_TX refused", call_x0(fd, 0x8400007B) == -EINVAL);
	CHECK("call VERSION refused", call_x0(fd, 0x84000063) == -EINVAL);
	CHECK("call PSCI refused", call_x0(fd, 0x84000000) == -EINVAL);
	CHECK("call upper bits refused", call_x0(fd, 0x184000068ULL) == -EINVAL);
	CHECK("call 0x85.. refused", call_x0(fd, 0x85000068) == -EINVAL);
	CHECK("call unknown id passed to the SPMC", call_x0(fd, 0x840000F0) == 0);
	CHECK("direct request echo", !io(fd, FLEXSERVE_IOC_FFA_CALL, &c) &&
	      c.x[0] == 0xC4000070 && c.x[3] == 2 && c.x[7] == 6 && c.x[1] == 0x80010000);
	CHECK("partition info into RX", call_x0(fd, 0x84000068) == 0 &&
	      !io(fd, FLEXSERVE_IOC_READ_RX, &cp) && !memcmp(rx, "FAKE", 4));
	cp.offset = 4096;
	cp.len = 1;
	CHECK("read RX past the end", io(fd, FLEXSERVE_IOC_READ_RX, &cp) == -EINVAL);
	cp.offset = 4093;
	cp.len = 4;
	CHECK("read RX across the end", io(fd, FLEXSERVE_IOC_READ_RX, &cp) == -EINVAL);
	cp.offset = 0xFFFFFFFF;
	cp.len = 2;
	CHECK("read RX wrapping", io(fd, FLEXSERVE_IOC_READ_RX, &cp) == -EINVAL);
	cp.offset = 4092;
	cp.len = 4;
	CHECK("write TX at the end", !io(fd, FLEXSERVE_IOC_WRITE_TX, &cp));
	cp.offset = 0;
	cp.len = 4;
	cp.addr = 8;
	CHECK("write TX from a bad address", io(fd, FLEXSERVE_IOC_WRITE_TX, &cp) == -EFAULT);
	CHECK("unknown ioctl", io(fd, _IO(FLEXSERVE_IOC_MAGIC, 9), NULL) == -ENOTTY);

	CHECK("alloc 0 pages", io(fd, FLEXSERVE_IOC_ALLOC, &(struct flexserve_alloc){ 0 }) ==
	      -EINVAL);
	a.pages = FLEXSERVE_MAX_PAGES + 1;
	CHECK("alloc too many", io(fd, FLEXSERVE_IOC_ALLOC, &a) == -EINVAL);
	a.pages = 3;
	CHECK("alloc 3 pages", !io(fd, FLEXSERVE_IOC_ALLOC, &a) && a.id && a.mmap_offset);
	CHECK("mmap private refused", mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE,
					    fd, a.mmap_offset) == MAP_FAILED && errno == EINVAL);
	CHECK("mmap past the buffer", mmap(NULL, 4 * 4096, PROT_READ, MAP_SHARED, fd,
					   a.mmap_offset) == MAP_FAILED && errno == EINVAL);
	CHECK("mmap unknown buffer", mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd,
					  a.mmap_offset + (1ULL << 40)) == MAP_FAILED &&
	      errno == ENOENT);
	p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, a.mmap_offset);
	CHECK("mmap 3 pages", p != MAP_FAILED);
	CHECK("pages zeroed", p[0] == 0 && p[3 * 4096 - 1] == 0);
	memset(p, 0x5A, 3 * 4096);
	q = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, a.mmap_offset + 2 * 4096);
	CHECK("mmap the last page alone", q != MAP_FAILED && q[0] == 0x5A);

	s.id = a.id;
	s.kind = 3;
	CHECK("send kind donate refused", io(fd, FLEXSERVE_IOC_MEM_SEND, &s) == -EINVAL);
	s.kind = FLEXSERVE_LEND;
	s.access = 3;
	CHECK("send bad access", io(fd, FLEXSERVE_IOC_MEM_SEND, &s) == -EINVAL);
	s.access = FLEXSERVE_RW;
	s.reserved = 1;
	CHECK("send reserved set", io(fd, FLEXSERVE_IOC_MEM_SEND, &s) == -EINVAL);
	s.reserved = 0;
	s.receiver = 0;
	CHECK("send to itself", io(fd, FLEXSERVE_IOC_MEM_SEND, &s) == -EINVAL);
	s.receiver = 0x8001;
	s.id = 999;
	CHECK("send unknown buffer", io(fd, FLEXSERVE_IOC_MEM_SEND, &s) == -ENOENT);
	s.id = a.id;

	/* A child that mapped the buffer before the lend must lose it too. */
	pipe(pipefd);
	pid = fork();
	if (!pid) {
		char b;

		read(pipefd[0], &b, 1);
		(void)((volatile char *)p)[4096];
		_exit(0);
	}
	CHECK("lend", !io(fd, FLEXSERVE_IOC_MEM_SEND, &s) && s.handle && !s.ffa_error);
	write(pipefd[1], "x", 1);
	waitpid(pid, &st, 0);
	CHECK("lent: older child's mapping faults SIGBUS", WIFSIGNALED(st) &&
	      WTERMSIG(st) == SIGBUS);
	CHECK("lent: access faults SIGBUS", child_sigbus(p) && child_sigbus(q));
	CHECK("lent: mmap refused", mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd,
					 a.mmap_offset) == MAP_FAILED && errno == EBUSY);
	CHECK("lent: lend again", io(fd, FLEXSERVE_IOC_MEM_SEND, &s) == -EBUSY);
	CHECK("lent: free", io(fd, FLEXSERVE_IOC_FREE, &a.id) == -EBUSY);
	rc.handle = s.handle + 100;
	CHECK("reclaim unknown handle", io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc) == -ENOENT);
	rc.handle = ~0ULL;
	CHECK("reclaim invalid handle", io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc) == -EINVAL);
	rc.handle = s.handle;
	CHECK("reclaim", !io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc) && !rc.ffa_error);
	CHECK("reclaim again", io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc) == -ENOENT);
	CHECK("reclaimed: maps again, data kept", !child_sigbus(p) && p[4096] == 0x5A &&
	      q[0] == 0x5A);

	s.kind = FLEXSERVE_SHARE;
	s.access = FLEXSERVE_RO;
	CHECK("share", !io(fd, FLEXSERVE_IOC_MEM_SEND, &s) && s.handle);
	p[1] = 1;
	CHECK("shared: still mapped", !child_sigbus(p) && p[1] == 1);
	CHECK("shared: free", io(fd, FLEXSERVE_IOC_FREE, &a.id) == -EBUSY);
	rc.handle = s.handle;
	CHECK("unshare", !io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc));

	CHECK("free while mapped", io(fd, FLEXSERVE_IOC_FREE, &a.id) == -EBUSY);
	munmap(p, 3 * 4096);
	munmap(q, 4096);
	CHECK("free", !io(fd, FLEXSERVE_IOC_FREE, &a.id));
	CHECK("free again", io(fd, FLEXSERVE_IOC_FREE, &a.id) == -ENOENT);

	s.kind = FLEXSERVE_LEND;
	s.access = FLEXSERVE_RW;
	CHECK("alloc 32768 pages", !io(fd, FLEXSERVE_IOC_ALLOC, &big));
	s.id = big.id;
	CHECK("lend 128 MiB", !io(fd, FLEXSERVE_IOC_MEM_SEND, &s));
	rc.handle = s.handle;
	CHECK("reclaim 128 MiB", !io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc));

	/*
	 * Pages freed and allocated again come back in reverse order (the per-CPU free
	 * lists are LIFO): one range each, a descriptor in several fragments.
	 */
	big.pages = 1024;
	CHECK("alloc, free, alloc 1024 pages", !io(fd, FLEXSERVE_IOC_ALLOC, &big) &&
	      !io(fd, FLEXSERVE_IOC_FREE, &big.id) && !io(fd, FLEXSERVE_IOC_ALLOC, &big));
	s.id = big.id;
	CHECK("lend scattered pages", !io(fd, FLEXSERVE_IOC_MEM_SEND, &s));
	rc.handle = s.handle;
	CHECK("reclaim scattered pages", !io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc));

	/* Memory the "SP" keeps: reclaim refused, then parked at close. */
	CHECK("alloc 2 pages", !io(fd, FLEXSERVE_IOC_ALLOC, &stuck));
	s.id = stuck.id;
	s.receiver = 0x8002;
	CHECK("lend to the SP that keeps it", !io(fd, FLEXSERVE_IOC_MEM_SEND, &s));
	rc.handle = s.handle;
	CHECK("reclaim denied", io(fd, FLEXSERVE_IOC_MEM_RECLAIM, &rc) == -EIO &&
	      rc.ffa_error == -6);
	CHECK("still lent after denial", io(fd, FLEXSERVE_IOC_FREE, &stuck.id) == -EBUSY);
}

int main(void)
{
	int ko, fd;

	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	ko = open("/flexserve_fake.ko", O_RDONLY);
	CHECK("load flexserve_fake.ko", !syscall(SYS_finit_module, ko, "", 0));
	fd = open("/dev/flexserve", O_RDWR);
	CHECK("open", fd >= 0);
	if (fd >= 0) {
		tests(fd);
		CHECK("close (parks the kept buffer)", !close(fd));
	}
	CHECK("unload", !syscall(SYS_delete_module, "flexserve_fake", O_NONBLOCK));
	printf("TESTS passed=%d failed=%d\n", passed, failed);
	fflush(stdout);
	reboot(RB_POWER_OFF);
	return 0;
}
