/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A pretend SPMC for flexserve_fake.ko, so that the module's paths run on a kernel with no
 * FF-A (tests only). It answers VERSION (1.2), ID_GET (0), FEATURES (4K), RXTX_MAP/UNMAP,
 * DIRECT_REQ_64 (x3-x7 echoed plus one), PARTITION_INFO_GET ("FAKE" in RX), MEM_SHARE and
 * MEM_LEND (the descriptor in TX checked, fragments included: sender, one EMAD, the
 * ranges' pages add up to the composite's) and MEM_RECLAIM, which it refuses (DENIED) for
 * memory sent to endpoint 0x8002, an "SP" that never gives memory back.
 * Everything else: NOT_SUPPORTED. Buffers are allocated a page at a time, so their
 * descriptors have many ranges and are sent in fragments.
 */
#define FS_MAX_ORDER		0
#define FAKE_STUCK_SP		0x8002
#define FAKE_STUCK		BIT(31)

static u32 fake_total, fake_got, fake_pages, fake_want, fake_count, fake_frags;
static u16 fake_receiver;

static void fake_ranges(const void *p, u32 len)
{
	const struct ffa_range *r = p;

	for (; len >= sizeof(*r); len -= sizeof(*r), r++)
		fake_pages += le32_to_cpu(r->pages);
}

static void fs_smccc(const struct arm_smccc_1_2_regs *a, struct arm_smccc_1_2_regs *r)
{
	const struct arm_smccc_1_2_regs in = *a;
	const struct ffa_mem_region *m = fs_tx;	/* NULL until RXTX_MAP */
	const struct ffa_emad *e = fs_tx + sizeof(*m);
	u32 emad = 0, head = 0;

	memset(r, 0, sizeof(*r));
	r->a0 = FFA_SUCCESS_32;
	switch (in.a0) {
	case FFA_VERSION:
		r->a0 = FFA_V1_2;
		break;
	case FFA_ID_GET:
	case FFA_FEATURES:
	case FFA_RXTX_MAP_64:
	case FFA_RXTX_UNMAP:
		break;
	case 0xC400006F:	/* DIRECT_REQ_64 */
		*r = in;
		r->a0 = 0xC4000070;
		r->a1 = (in.a1 & 0xFFFF) << 16 | (in.a1 >> 16 & 0xFFFF);
		r->a3++;
		r->a4++;
		r->a5++;
		r->a6++;
		r->a7++;
		break;
	case 0x84000068:	/* PARTITION_INFO_GET */
		memcpy(fs_rx, "FAKE", 4);
		r->a2 = 1;
		break;
	case FFA_MEM_SHARE:
	case FFA_MEM_LEND:
		emad = le32_to_cpu(m->emad_size);
		head = sizeof(*m) + emad + sizeof(struct ffa_composite);
		if (le16_to_cpu(m->sender) != fs_id || le32_to_cpu(m->emad_count) != 1 ||
		    (emad != 16 && emad != 32) || in.a2 < head || in.a2 > in.a1)
			goto invalid;
		fake_total = in.a1;
		fake_got = in.a2;
		fake_pages = 0;
		fake_frags = 1;
		fake_want = le32_to_cpu(((struct ffa_composite *)(fs_tx + head) - 1)->total_pages);
		fake_receiver = le16_to_cpu(e->receiver);
		fake_ranges(fs_tx + head, fake_got - head);
		goto sent;
	case FFA_MEM_FRAG_TX:
		if (!fake_total || in.a3 > fake_total - fake_got)
			goto invalid;
		fake_got += in.a3;
		fake_frags++;
		fake_ranges(fs_tx, in.a3);
sent:
		if (fake_got < fake_total) {
			r->a0 = FFA_MEM_FRAG_RX;
			r->a1 = 0x77;
			r->a3 = fake_got;
			break;
		}
		fake_total = 0;
		pr_info("fake SPMC: %u pages in %u bytes, %u fragments\n", fake_pages, fake_got,
			fake_frags);
		if (fake_pages != fake_want)
			goto invalid;
		r->a2 = ++fake_count | (fake_receiver == FAKE_STUCK_SP ? FAKE_STUCK : 0);
		r->a3 = 0xF5;
		break;
	case FFA_MEM_RECLAIM:
		if (in.a1 & FAKE_STUCK) {
			r->a0 = FFA_ERROR;
			r->a2 = (u32)-6;	/* DENIED */
		}
		break;
	default:
		r->a0 = FFA_ERROR;
		r->a2 = (u32)-1;	/* NOT_SUPPORTED */
	}
	return;
invalid:
	fake_total = 0;
	r->a0 = FFA_ERROR;
	r->a2 = (u32)-2;		/* INVALID_PARAMETERS */
}

static bool fs_conduit_ok(void)
{
	return true;
}
