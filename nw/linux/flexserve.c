// SPDX-License-Identifier: GPL-2.0
/*
 * flexserve: the FlexServe normal-world client's way to FF-A, /dev/flexserve (root only).
 *
 * At load the module negotiates FF-A v1.2 (v1.1 accepted), reads its endpoint id and maps
 * its own RX/TX pair with FFA_RXTX_MAP. User space then
 *  - issues FF-A calls (x0-x17 over SMC), except those that name memory: those are the
 *    module's (version, RX/TX map, memory transactions);
 *  - copies out of RX and into TX;
 *  - allocates buffers of zeroed pages, fills them through mmap, and shares or lends a
 *    buffer: the module writes the memory transaction descriptor (v1.1/v1.2 layout) into
 *    TX itself, so user space never names a physical address. A lent buffer is unmapped
 *    from every process before FFA_MEM_LEND and refuses faults until it is reclaimed.
 * Closing the device reclaims what is still shared or lent; memory the secure world still
 * holds is parked (never freed) and logged.
 *
 * Locks: fs_lock serialises the RX/TX buffers (and the parked list); each open file's lock
 * guards its buffers' state. A file's lock is taken under mmap_lock (mmap, fault, close),
 * so nothing copies from or to user space while holding it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/arm-smccc.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "flexserve_uapi.h"
#include "flexserve_desc.h"

#define FFA_ERROR		0x84000060
#define FFA_SUCCESS_32		0x84000061
#define FFA_SUCCESS_64		0xC4000061
#define FFA_VERSION		0x84000063
#define FFA_FEATURES		0x84000064
#define FFA_RXTX_MAP_64		0xC4000066
#define FFA_RXTX_UNMAP		0x84000067
#define FFA_ID_GET		0x84000069
#define FFA_MEM_LEND		0x84000072
#define FFA_MEM_SHARE		0x84000073
#define FFA_MEM_RECLAIM		0x84000077
#define FFA_MEM_FRAG_RX		0x8400007A
#define FFA_MEM_FRAG_TX		0x8400007B

#define FFA_V1_1		0x10001
#define FFA_V1_2		0x10002
#define FFA_HANDLE_INVALID	(~0ULL)
/* A buffer's id is the top of its mmap page offset. */
#define FS_PGOFF_SHIFT		18
#define FS_MAX_ID		0xFFFF
static_assert(FLEXSERVE_MAX_PAGES == 1U << FS_PGOFF_SHIFT);

enum fs_state {
	FS_FREE,	/* the normal world's; mappable */
	FS_SHARED,	/* shared; still mappable */
	FS_LENT,	/* lent; unmapped, faults refused */
	FS_LOST,	/* the SPMC's answer made no sense: maybe held, no handle */
};

struct fs_file {
	struct mutex lock;	/* bufs; each buffer's state, busy, handle and vmas */
	struct list_head bufs;
	struct address_space *mapping;
};

struct fs_buf {
	struct list_head node;
	struct fs_file *owner;
	struct page **pages;
	u32 id;
	u32 npages;
	u32 vmas;		/* VMAs mapping it */
	bool busy;		/* an FF-A call about it is in flight */
	enum fs_state state;
	u64 handle;		/* when SHARED or LENT */
};

static DEFINE_MUTEX(fs_lock);
static LIST_HEAD(fs_parked);
static DEFINE_IDA(fs_ida);
static struct page *fs_rxtx;
static void *fs_tx, *fs_rx;
static u32 fs_size, fs_version;
static u16 fs_id;

#ifdef FLEXSERVE_FAKE_SPMC
#include "flexserve_fake.h"
#else
#define FS_MAX_ORDER MAX_PAGE_ORDER
#define fs_smccc arm_smccc_1_2_smc
static bool fs_conduit_ok(void)
{
	return arm_smccc_1_1_get_conduit() == SMCCC_CONDUIT_SMC &&
	       arm_smccc_get_version() >= ARM_SMCCC_VERSION_1_2;
}
#endif

static struct arm_smccc_1_2_regs fs_smc(unsigned long fid, unsigned long a1,
					unsigned long a2, unsigned long a3)
{
	struct arm_smccc_1_2_regs args = { .a0 = fid, .a1 = a1, .a2 = a2, .a3 = a3 };
	struct arm_smccc_1_2_regs res;

	fs_smccc(&args, &res);
	return res;
}

/* 0 on FFA_SUCCESS, the FF-A error code (< 0) on FFA_ERROR, 1 on anything else. */
static int fs_status(const struct arm_smccc_1_2_regs *r)
{
	if (r->a0 == FFA_SUCCESS_32 || r->a0 == FFA_SUCCESS_64)
		return 0;
	if (r->a0 == FFA_ERROR && (s32)r->a2 < 0)
		return (s32)r->a2;
	return 1;
}

static int fs_errno(int st)
{
	return !st ? 0 : st < 0 ? -EIO : -EPROTO;
}

static int fs_reclaim(u64 handle)
{
	struct arm_smccc_1_2_regs r;

	r = fs_smc(FFA_MEM_RECLAIM, lower_32_bits(handle), upper_32_bits(handle), 0);
	return fs_status(&r);
}

/* Calls user space may make: FF-A ids that name no memory. */
static bool fs_call_allowed(u64 fid)
{
	if ((fid & ~0x400000FFULL) != 0x84000000 || (fid & 0xFF) < 0x60)
		return false;
	switch (fid & 0xFF) {
	case 0x63:		/* VERSION: negotiated at load */
	case 0x66 ... 0x67:	/* RXTX_MAP, RXTX_UNMAP */
	case 0x71 ... 0x7B:	/* DONATE ... FRAG_TX */
	case 0x87 ... 0x89:	/* SECONDARY_EP_REGISTER, MEM_PERM_GET/SET */
		return false;
	}
	return true;
}

/* Calls on the RX/TX buffers: RX_RELEASE, PARTITION_INFO_GET, RX_ACQUIRE, MSG_SEND2. */
static bool fs_call_uses_rxtx(u64 fid)
{
	u8 n = fid & 0xFF;

	return n == 0x65 || n == 0x68 || n == 0x84 || n == 0x86;
}

static int fs_call(struct flexserve_ffa_call *c)
{
	struct arm_smccc_1_2_regs r;
	bool lock = fs_call_uses_rxtx(c->x[0]);

	static_assert(sizeof(r) == sizeof(c->x));
	if (!fs_call_allowed(c->x[0]))
		return -EINVAL;
	memcpy(&r, c->x, sizeof(r));
	if (lock)
		mutex_lock(&fs_lock);
	fs_smccc(&r, &r);
	if (lock)
		mutex_unlock(&fs_lock);
	memcpy(c->x, &r, sizeof(r));
	return 0;
}

static int fs_copy(struct flexserve_buf_copy *c, bool to_tx)
{
	void __user *up = u64_to_user_ptr(c->addr);
	void *bounce;
	int ret = 0;

	if (c->offset > fs_size || c->len > fs_size - c->offset)
		return -EINVAL;
	bounce = kmalloc(c->len, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	if (to_tx && copy_from_user(bounce, up, c->len)) {
		ret = -EFAULT;
	} else {
		mutex_lock(&fs_lock);
		if (to_tx)
			memcpy(fs_tx + c->offset, bounce, c->len);
		else
			memcpy(bounce, fs_rx + c->offset, c->len);
		mutex_unlock(&fs_lock);
		if (!to_tx && copy_to_user(up, bounce, c->len))
			ret = -EFAULT;
	}
	kfree(bounce);
	return ret;
}

static void fs_buf_free(struct fs_buf *b)
{
	u32 i;

	for (i = 0; i < b->npages; i++)
		__free_page(b->pages[i]);
	kvfree(b->pages);
	if (b->id)
		ida_free(&fs_ida, b->id);
	kfree(b);
}

static struct fs_buf *fs_find(struct fs_file *f, u32 id)
{
	struct fs_buf *b;

	list_for_each_entry(b, &f->bufs, node)
		if (b->id == id)
			return b;
	return NULL;
}

static loff_t fs_offset(const struct fs_buf *b)
{
	return (loff_t)b->id << (FS_PGOFF_SHIFT + PAGE_SHIFT);
}

/* Zeroed pages in as few physically contiguous runs as the allocator gives. */
static int fs_alloc(struct fs_file *f, struct flexserve_alloc *a)
{
	unsigned int order = FS_MAX_ORDER;
	struct fs_buf *b;
	int id;

	if (!a->pages || a->pages > FLEXSERVE_MAX_PAGES)
		return -EINVAL;
	b = kzalloc(sizeof(*b), GFP_KERNEL);
	if (!b)
		return -ENOMEM;
	b->pages = kvcalloc(a->pages, sizeof(*b->pages), GFP_KERNEL);
	if (!b->pages)
		goto nomem;
	while (b->npages < a->pages) {
		unsigned int o = min(order, ilog2(a->pages - b->npages));
		gfp_t gfp = GFP_KERNEL_ACCOUNT | __GFP_ZERO;
		struct page *p;
		u32 j;

		p = alloc_pages(o ? gfp | __GFP_NORETRY | __GFP_NOWARN : gfp, o);
		if (!p && o) {
			order = o - 1;
			continue;
		}
		if (!p)
			goto nomem;
		split_page(p, o);
		for (j = 0; j < 1U << o; j++)
			b->pages[b->npages++] = p + j;
	}
	id = ida_alloc_range(&fs_ida, 1, FS_MAX_ID, GFP_KERNEL);
	if (id < 0) {
		fs_buf_free(b);
		return id;
	}
	b->id = id;
	b->owner = f;
	b->handle = FFA_HANDLE_INVALID;
	mutex_lock(&f->lock);
	list_add(&b->node, &f->bufs);
	mutex_unlock(&f->lock);
	a->id = id;
	a->mmap_offset = fs_offset(b);
	return 0;
nomem:
	fs_buf_free(b);
	return -ENOMEM;
}

static int fs_free(struct fs_file *f, u32 id)
{
	struct fs_buf *b;
	int ret = 0;

	mutex_lock(&f->lock);
	b = fs_find(f, id);
	if (!b)
		ret = -ENOENT;
	else if (b->state != FS_FREE || b->busy || b->vmas)
		ret = -EBUSY;
	else
		list_del(&b->node);
	mutex_unlock(&f->lock);
	if (!ret)
		fs_buf_free(b);
	return ret;
}

/*
 * FFA_MEM_SHARE or FFA_MEM_LEND of all of b, the descriptor in TX (in fragments if it is
 * larger). Returns fs_status() of the last reply. *handle: what the SPMC now holds for b,
 * FFA_HANDLE_INVALID if nothing (an FFA_ERROR aborts the whole transaction) or not known.
 */
static int fs_send(const struct fs_buf *b, const struct flexserve_mem_send *s, u64 *handle)
{
	const u32 per_frag = fs_size / sizeof(struct ffa_range);
	struct arm_smccc_1_2_regs r;
	u32 head, total, i = 0, n, sent;
	u64 h = FFA_HANDLE_INVALID;
	int st;

	mutex_lock(&fs_lock);
	head = fs_desc_head(fs_tx, fs_version >= FFA_V1_2 ? 32 : 16, fs_id, s, b->pages,
			    b->npages, &total);
	n = fs_ranges(b->pages, b->npages, &i, fs_tx + head,
		      (fs_size - head) / sizeof(struct ffa_range));
	sent = head + n * sizeof(struct ffa_range);
	r = fs_smc(s->kind == FLEXSERVE_LEND ? FFA_MEM_LEND : FFA_MEM_SHARE, total, sent, 0);
	while (r.a0 == FFA_MEM_FRAG_RX) {
		h = (r.a1 & U32_MAX) | (r.a2 & U32_MAX) << 32;
		n = (u32)r.a3 == sent ? fs_ranges(b->pages, b->npages, &i, fs_tx, per_frag) : 0;
		if (!n)
			break;
		sent += n * sizeof(struct ffa_range);
		r = fs_smc(FFA_MEM_FRAG_TX, lower_32_bits(h), upper_32_bits(h),
			   n * sizeof(struct ffa_range));
	}
	mutex_unlock(&fs_lock);
	st = r.a0 == FFA_MEM_FRAG_RX ? 1 : fs_status(&r);
	if (!st)
		h = (r.a2 & U32_MAX) | (r.a3 & U32_MAX) << 32;
	*handle = st < 0 ? FFA_HANDLE_INVALID : h;
	return st;
}

static int fs_mem_send(struct fs_file *f, struct flexserve_mem_send *s)
{
	enum fs_state to = s->kind == FLEXSERVE_LEND ? FS_LENT : FS_SHARED;
	struct fs_buf *b;
	u64 handle;
	int st;

	if (s->reserved || (s->kind != FLEXSERVE_SHARE && s->kind != FLEXSERVE_LEND) ||
	    (s->access != FLEXSERVE_RO && s->access != FLEXSERVE_RW) || s->receiver == fs_id)
		return -EINVAL;
	mutex_lock(&f->lock);
	b = fs_find(f, s->id);
	st = !b ? -ENOENT : b->state != FS_FREE || b->busy ? -EBUSY : 0;
	if (!st) {
		b->busy = true;
		b->state = to;	/* a lent buffer faults no more */
	}
	mutex_unlock(&f->lock);
	if (st)
		return st;
	if (to == FS_LENT)
		unmap_mapping_range(f->mapping, fs_offset(b), (loff_t)b->npages << PAGE_SHIFT, 1);
	st = fs_send(b, s, &handle);
	mutex_lock(&f->lock);
	b->busy = false;
	b->handle = handle;
	if (st && handle == FFA_HANDLE_INVALID)
		b->state = st > 0 ? FS_LOST : FS_FREE;
	mutex_unlock(&f->lock);
	if (st > 0)
		pr_warn("buffer %u: unexpected reply to a memory send; kept (handle %#llx)\n",
			b->id, handle);
	s->handle = handle;
	s->ffa_error = min(st, 0);
	return fs_errno(st);
}

static int fs_mem_reclaim(struct fs_file *f, struct flexserve_mem_reclaim *rc)
{
	struct fs_buf *b, *found = NULL;
	int st;

	if (rc->reserved || rc->handle == FFA_HANDLE_INVALID)
		return -EINVAL;
	mutex_lock(&f->lock);
	list_for_each_entry(b, &f->bufs, node)
		if ((b->state == FS_SHARED || b->state == FS_LENT) && b->handle == rc->handle)
			found = b;
	st = !found ? -ENOENT : found->busy ? -EBUSY : 0;
	if (!st)
		found->busy = true;
	mutex_unlock(&f->lock);
	if (st)
		return st;
	st = fs_reclaim(rc->handle);
	mutex_lock(&f->lock);
	found->busy = false;
	if (!st) {
		found->state = FS_FREE;
		found->handle = FFA_HANDLE_INVALID;
	}
	mutex_unlock(&f->lock);
	rc->ffa_error = min(st, 0);
	return fs_errno(st);
}

static void fs_vm_open(struct vm_area_struct *vma)
{
	struct fs_buf *b = vma->vm_private_data;

	mutex_lock(&b->owner->lock);
	b->vmas++;
	mutex_unlock(&b->owner->lock);
}

static void fs_vm_close(struct vm_area_struct *vma)
{
	struct fs_buf *b = vma->vm_private_data;

	mutex_lock(&b->owner->lock);
	b->vmas--;
	mutex_unlock(&b->owner->lock);
}

/* Maps the whole VMA at its first fault, unless the buffer is lent (or lost). */
static vm_fault_t fs_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct fs_buf *b = vma->vm_private_data;
	unsigned long i = vma->vm_pgoff & (FLEXSERVE_MAX_PAGES - 1), addr;
	vm_fault_t ret = VM_FAULT_SIGBUS;

	mutex_lock(&b->owner->lock);
	if (b->state == FS_FREE || b->state == FS_SHARED) {
		for (addr = vma->vm_start; addr < vma->vm_end; addr += PAGE_SIZE) {
			ret = vmf_insert_pfn(vma, addr, page_to_pfn(b->pages[i++]));
			if (ret != VM_FAULT_NOPAGE)
				break;
		}
	}
	mutex_unlock(&b->owner->lock);
	return ret;
}

static const struct vm_operations_struct fs_vm_ops = {
	.open = fs_vm_open,
	.close = fs_vm_close,
	.fault = fs_fault,
};

/* PFN map: no struct page behind the PTEs, so nothing can pin (GUP) a page to be lent. */
static int fs_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct fs_file *f = file->private_data;
	unsigned long first = vma->vm_pgoff & (FLEXSERVE_MAX_PAGES - 1);
	unsigned long id = vma->vm_pgoff >> FS_PGOFF_SHIFT;
	struct fs_buf *b;
	int ret = 0;

	if (is_cow_mapping(vma->vm_flags))
		return -EINVAL;
	mutex_lock(&f->lock);
	b = id <= FS_MAX_ID ? fs_find(f, id) : NULL;
	if (!b)
		ret = -ENOENT;
	else if (first + vma_pages(vma) > b->npages)
		ret = -EINVAL;
	else if (b->state != FS_FREE && b->state != FS_SHARED)
		ret = -EBUSY;
	if (!ret) {
		vma->vm_private_data = b;
		vma->vm_ops = &fs_vm_ops;
		vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
		b->vmas++;
	}
	mutex_unlock(&f->lock);
	return ret;
}

static int fs_open(struct inode *inode, struct file *file)
{
	struct fs_file *f;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	INIT_LIST_HEAD(&f->bufs);
	f->mapping = file->f_mapping;
	file->private_data = f;
	return 0;
}

/* No VMA is left (each holds the file). Reclaims what is out; parks what stays out. */
static int fs_release(struct inode *inode, struct file *file)
{
	struct fs_file *f = file->private_data;
	struct fs_buf *b, *n;

	list_for_each_entry_safe(b, n, &f->bufs, node) {
		list_del(&b->node);
		if (b->state == FS_FREE ||
		    (b->state != FS_LOST && !fs_reclaim(b->handle))) {
			fs_buf_free(b);
			continue;
		}
		pr_warn("buffer %u (%u pages, handle %#llx) held by the secure world: parked\n",
			b->id, b->npages, b->handle);
		mutex_lock(&fs_lock);
		list_add(&b->node, &fs_parked);
		mutex_unlock(&fs_lock);
	}
	kfree(f);
	return 0;
}

static const unsigned int fs_cmds[] = {
	FLEXSERVE_IOC_INFO, FLEXSERVE_IOC_FFA_CALL, FLEXSERVE_IOC_READ_RX,
	FLEXSERVE_IOC_WRITE_TX, FLEXSERVE_IOC_ALLOC, FLEXSERVE_IOC_FREE,
	FLEXSERVE_IOC_MEM_SEND, FLEXSERVE_IOC_MEM_RECLAIM,
};

static long fs_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct fs_file *f = file->private_data;
	void __user *up = (void __user *)arg;
	union {
		struct flexserve_info info;
		struct flexserve_ffa_call call;
		struct flexserve_buf_copy copy;
		struct flexserve_alloc alloc;
		u32 id;
		struct flexserve_mem_send send;
		struct flexserve_mem_reclaim reclaim;
	} u = {};
	long ret = -ENOTTY;

	if (_IOC_TYPE(cmd) != FLEXSERVE_IOC_MAGIC || _IOC_NR(cmd) >= ARRAY_SIZE(fs_cmds) ||
	    fs_cmds[_IOC_NR(cmd)] != cmd)
		return -ENOTTY;
	if ((_IOC_DIR(cmd) & _IOC_WRITE) && copy_from_user(&u, up, _IOC_SIZE(cmd)))
		return -EFAULT;
	switch (cmd) {
	case FLEXSERVE_IOC_INFO:
		u.info.ffa_version = fs_version;
		u.info.rxtx_size = fs_size;
		u.info.own_id = fs_id;
		ret = 0;
		break;
	case FLEXSERVE_IOC_FFA_CALL:
		ret = fs_call(&u.call);
		break;
	case FLEXSERVE_IOC_READ_RX:
	case FLEXSERVE_IOC_WRITE_TX:
		ret = fs_copy(&u.copy, cmd == FLEXSERVE_IOC_WRITE_TX);
		break;
	case FLEXSERVE_IOC_ALLOC:
		ret = fs_alloc(f, &u.alloc);
		break;
	case FLEXSERVE_IOC_FREE:
		ret = fs_free(f, u.id);
		break;
	case FLEXSERVE_IOC_MEM_SEND:
		ret = fs_mem_send(f, &u.send);
		break;
	case FLEXSERVE_IOC_MEM_RECLAIM:
		ret = fs_mem_reclaim(f, &u.reclaim);
		break;
	}
	if ((_IOC_DIR(cmd) & _IOC_READ) && copy_to_user(up, &u, _IOC_SIZE(cmd)))
		return -EFAULT;
	return ret;
}

static const struct file_operations fs_fops = {
	.owner = THIS_MODULE,
	.open = fs_open,
	.release = fs_release,
	.unlocked_ioctl = fs_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = fs_mmap,
	.llseek = noop_llseek,
};

static struct miscdevice fs_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "flexserve",
	.fops = &fs_fops,
	.mode = 0600,
};

static int fs_unmap_rxtx(void)
{
	struct arm_smccc_1_2_regs r = fs_smc(FFA_RXTX_UNMAP, 0, 0, 0);

	if (fs_status(&r)) {
		pr_err("FFA_RXTX_UNMAP failed: RX/TX stay with the SPMC, leaked\n");
		return -EIO;
	}
	__free_pages(fs_rxtx, get_order(2 * fs_size));
	return 0;
}

static int __init fs_init(void)
{
	struct arm_smccc_1_2_regs r;
	int ret;

	if (!fs_conduit_ok())
		return -ENODEV;
	r = fs_smc(FFA_VERSION, FFA_V1_2, 0, 0);
	if ((u32)r.a0 >> 16 != 1 || (r.a0 & 0xFFFF) < 1) {	/* NOT_SUPPORTED is -1 */
		pr_err("FF-A version %#lx: need 1.1 or later 1.x\n", r.a0);
		return -ENODEV;
	}
	fs_version = min_t(u32, r.a0, FFA_V1_2);
	r = fs_smc(FFA_ID_GET, 0, 0, 0);
	if (fs_status(&r))
		return -ENODEV;
	fs_id = r.a2 & 0xFFFF;
	/* Minimum RX/TX size: 0 4K, 1 64K, 2 16K. */
	r = fs_smc(FFA_FEATURES, FFA_RXTX_MAP_64, 0, 0);
	fs_size = SZ_4K;
	if (!fs_status(&r) && (r.a2 & 3) == 1)
		fs_size = SZ_64K;
	else if (!fs_status(&r) && (r.a2 & 3) == 2)
		fs_size = SZ_16K;
	fs_size = max_t(u32, fs_size, PAGE_SIZE);
	/* One block of twice the size keeps each half aligned to the size. */
	fs_rxtx = alloc_pages(GFP_KERNEL | __GFP_ZERO, get_order(2 * fs_size));
	if (!fs_rxtx)
		return -ENOMEM;
	fs_tx = page_address(fs_rxtx);
	fs_rx = fs_tx + fs_size;
	r = fs_smc(FFA_RXTX_MAP_64, virt_to_phys(fs_tx), virt_to_phys(fs_rx), fs_size / SZ_4K);
	ret = fs_status(&r);
	if (ret) {
		pr_err("FFA_RXTX_MAP: %d\n", ret);
		if (ret < 0)
			__free_pages(fs_rxtx, get_order(2 * fs_size));
		return -ENODEV;
	}
	ret = misc_register(&fs_misc);
	if (ret)
		fs_unmap_rxtx();
	else
		pr_info("FF-A %u.%u, endpoint %#x, RX/TX %u bytes\n", fs_version >> 16,
			fs_version & 0xFFFF, fs_id, fs_size);
	return ret;
}

static void __exit fs_exit(void)
{
	struct fs_buf *b, *n;

	misc_deregister(&fs_misc);
	list_for_each_entry_safe(b, n, &fs_parked, node) {
		if (fs_reclaim(b->handle)) {
			pr_err("buffer %u (handle %#llx) still held at unload: leaked\n",
			       b->id, b->handle);
			continue;
		}
		list_del(&b->node);
		fs_buf_free(b);
	}
	fs_unmap_rxtx();
}

module_init(fs_init);
module_exit(fs_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("FlexServe: FF-A calls, RX/TX and memory sharing for user space");
