/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * /dev/flexserve: FF-A calls, the RX/TX buffers and memory to share and lend, for the
 * FlexServe normal-world client. The Rust mirror is nw/linux-uapi; a test checks it
 * against this file.
 *
 * Errors: -EINVAL a malformed argument, -ENOENT an unknown buffer id or handle, -EBUSY a
 * buffer in the wrong state (lent, shared, mapped), -EIO the SPMC refused (ffa_error has
 * its FF-A status), -EPROTO its reply made no sense (the buffer is kept, never freed).
 */
#ifndef _UAPI_FLEXSERVE_H
#define _UAPI_FLEXSERVE_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* FLEXSERVE_IOC_INFO: what the module negotiated at load. */
struct flexserve_info {
	__u32 ffa_version;	/* major << 16 | minor */
	__u32 rxtx_size;	/* bytes in each of RX and TX */
	__u16 own_id;		/* this endpoint's FF-A id (FFA_ID_GET) */
	__u16 reserved0;
	__u32 reserved1;
};

/*
 * FLEXSERVE_IOC_FFA_CALL: x0-x17 in, x0-x17 out (SMC). x0 must be an FF-A function id
 * (0x84000060-0x840000FF, 0xC4000060-0xC40000FF) other than FFA_VERSION, RXTX_MAP/UNMAP,
 * the memory-transaction calls (DONATE, LEND, SHARE, RETRIEVE, RELINQUISH, RECLAIM,
 * OP_PAUSE/RESUME, FRAG_RX/TX, PERM_GET/SET) and SECONDARY_EP_REGISTER.
 */
struct flexserve_ffa_call {
	__u64 x[18];
};

/* FLEXSERVE_IOC_READ_RX / WRITE_TX: copy len bytes at offset of RX (TX) from (to) addr. */
struct flexserve_buf_copy {
	__u64 addr;
	__u32 offset;
	__u32 len;
};

/*
 * FLEXSERVE_IOC_ALLOC: pages zeroed 4 KiB pages; returns the buffer id and the offset to
 * mmap it at (MAP_SHARED; any page-aligned part of the buffer).
 */
struct flexserve_alloc {
	__u32 pages;		/* in: 1..FLEXSERVE_MAX_PAGES */
	__u32 id;		/* out */
	__u64 mmap_offset;	/* out */
};

#define FLEXSERVE_MAX_PAGES	(1U << 18)

/* flexserve_mem_send.kind: the FF-A transaction type. */
#define FLEXSERVE_SHARE		1
#define FLEXSERVE_LEND		2
/* flexserve_mem_send.access: the FF-A data access permission. */
#define FLEXSERVE_RO		1
#define FLEXSERVE_RW		2

/*
 * FLEXSERVE_IOC_MEM_SEND: share or lend a whole buffer to one receiver. A lent buffer is
 * unmapped from every process first and cannot be mapped until it is reclaimed.
 */
struct flexserve_mem_send {
	__u32 id;
	__u16 receiver;
	__u8 kind;
	__u8 access;
	__u64 handle;		/* out */
	__s32 ffa_error;	/* out: the FF-A status on -EIO */
	__u32 reserved;
};

/* FLEXSERVE_IOC_MEM_RECLAIM: FFA_MEM_RECLAIM of a handle MEM_SEND returned. */
struct flexserve_mem_reclaim {
	__u64 handle;
	__s32 ffa_error;	/* out: the FF-A status on -EIO */
	__u32 reserved;
};

#define FLEXSERVE_IOC_MAGIC	0xF5
#define FLEXSERVE_IOC_INFO	_IOR(FLEXSERVE_IOC_MAGIC, 0, struct flexserve_info)
#define FLEXSERVE_IOC_FFA_CALL	_IOWR(FLEXSERVE_IOC_MAGIC, 1, struct flexserve_ffa_call)
#define FLEXSERVE_IOC_READ_RX	_IOW(FLEXSERVE_IOC_MAGIC, 2, struct flexserve_buf_copy)
#define FLEXSERVE_IOC_WRITE_TX	_IOW(FLEXSERVE_IOC_MAGIC, 3, struct flexserve_buf_copy)
#define FLEXSERVE_IOC_ALLOC	_IOWR(FLEXSERVE_IOC_MAGIC, 4, struct flexserve_alloc)
#define FLEXSERVE_IOC_FREE	_IOW(FLEXSERVE_IOC_MAGIC, 5, __u32)
#define FLEXSERVE_IOC_MEM_SEND	_IOWR(FLEXSERVE_IOC_MAGIC, 6, struct flexserve_mem_send)
#define FLEXSERVE_IOC_MEM_RECLAIM _IOWR(FLEXSERVE_IOC_MAGIC, 7, struct flexserve_mem_reclaim)

#endif /* _UAPI_FLEXSERVE_H */
