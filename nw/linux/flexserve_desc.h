/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The FF-A memory transaction descriptor (FF-A v1.2 sec. 10.11, v1.1/v1.2 layout) that
 * flexserve.c writes into TX: header, one EMAD, composite, constituent ranges. Apart so
 * that a host test (nw/linux-uapi) builds one and parses it with the ffa crate. The
 * includer provides u8-u32, __le16-__le64, cpu_to_le*(), memset(), PAGE_SIZE, PFN_PHYS(),
 * page_to_pfn() and flexserve_uapi.h.
 */
#ifndef _FLEXSERVE_DESC_H
#define _FLEXSERVE_DESC_H

#define FFA_PAGE		4096
/* Memory region attributes: normal memory, write-back, inner shareable. */
#define FFA_NORMAL_WB_IS	0x2F

struct ffa_mem_region {
	__le16 sender;
	__le16 attributes;
	__le32 flags;
	__le64 handle;
	__le64 tag;
	__le32 emad_size;
	__le32 emad_count;
	__le32 emad_offset;
	u8 reserved[12];
};

/* Endpoint memory access descriptor; v1.2 appends 16 zero bytes. */
struct ffa_emad {
	__le16 receiver;
	u8 perm;
	u8 flags;
	__le32 composite_offset;
	__le64 reserved;
};

struct ffa_composite {
	__le32 total_pages;
	__le32 range_count;
	__le64 reserved;
};

struct ffa_range {
	__le64 address;
	__le32 pages;
	__le32 reserved;
};

/*
 * Writes the ranges of pages *i.. (runs of consecutive frames) into dst, at most max,
 * advancing *i; returns how many. With dst NULL, only counts.
 */
static u32 fs_ranges(struct page *const *pages, u32 npages, u32 *i, struct ffa_range *dst,
		     u32 max)
{
	u32 n;

	for (n = 0; *i < npages && n < max; n++) {
		unsigned long pfn = page_to_pfn(pages[*i]);
		u32 len = 1;

		while (*i + len < npages && page_to_pfn(pages[*i + len]) == pfn + len)
			len++;
		if (dst) {
			dst[n].address = cpu_to_le64(PFN_PHYS(pfn));
			dst[n].pages = cpu_to_le32(len * (PAGE_SIZE / FFA_PAGE));
			dst[n].reserved = 0;
		}
		*i += len;
	}
	return n;
}

/*
 * Writes the header, the EMAD (emad: 16 or 32 bytes) and the composite of a send of s->kind
 * from sender to s->receiver of all of pages; returns their length, *total the whole
 * descriptor's. The ranges follow (fs_ranges()).
 */
static u32 fs_desc_head(void *tx, u32 emad, u16 sender, const struct flexserve_mem_send *s,
			struct page *const *pages, u32 npages, u32 *total)
{
	struct ffa_mem_region *m = tx;
	struct ffa_emad *e = tx + sizeof(*m);
	struct ffa_composite *c = tx + sizeof(*m) + emad;
	u32 head = sizeof(*m) + emad + sizeof(*c), i = 0;
	u32 n = fs_ranges(pages, npages, &i, NULL, ~0U);

	memset(tx, 0, head);
	m->sender = cpu_to_le16(sender);
	/* A lend to one borrower leaves the memory type to it (FF-A v1.2 10.10.4.1). */
	m->attributes = cpu_to_le16(s->kind == FLEXSERVE_SHARE ? FFA_NORMAL_WB_IS : 0);
	m->emad_size = cpu_to_le32(emad);
	m->emad_count = cpu_to_le32(1);
	m->emad_offset = cpu_to_le32(sizeof(*m));
	e->receiver = cpu_to_le16(s->receiver);
	e->perm = s->access;	/* data access; instruction access not specified */
	e->composite_offset = cpu_to_le32(sizeof(*m) + emad);
	c->total_pages = cpu_to_le32(npages * (PAGE_SIZE / FFA_PAGE));
	c->range_count = cpu_to_le32(n);
	*total = head + n * sizeof(struct ffa_range);
	return head;
}

#endif /* _FLEXSERVE_DESC_H */
