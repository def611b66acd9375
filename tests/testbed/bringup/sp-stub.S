/*
 * Bring-up stand-in for the SP (until flexserve-sp lands): S-EL1, MMU off, entered at
 * load-address + 0x4000 with x0 = FF-A boot-info blob. Calls FFA_VERSION, FFA_ID_GET,
 * FFA_CONSOLE_LOG, FFA_MSG_WAIT, then answers direct requests:
 *   DIRECT_REQ_32/64: x3 += 1, x4-x7 echoed, as DIRECT_RESP of the same width;
 *   DIRECT_REQ2:      x4 += 1, x5-x17 echoed, as DIRECT_RESP2;
 *   x3 (or x4 for REQ2) == 0xdead: load from an unmapped IPA (stage-2 fault, "SP failed");
 *   x3 == 0xab047: FFA_ABORT.
 *   x3 == 0xf1f10001: firewall probe over the emulated TZC-400 (0x090c0000) and the Flex-Mem window
 *     page W = 0x50000000 (secure alias; MMU off = NS=0): x4 = BUILD_CONFIG, x5 = a secure
 *     load from W+8 before securing (blocked: poison), then secures [W, W + 64 MiB) (region 2
 *     split around it with region 6, region 5 secure RW, behind the gate keeper), stores x6 to W+8 and
 *     answers x6 = the value loaded back, x7 = FAIL_ADDRESS_LOW.
 *   x3 == 0xf1f10002: scrubs W+8, gives the 64 MiB back to the NS region (gate closed, regions 5/6 off,
 *     region 2 whole again, gate open); x5 = a secure load from W+8 after (blocked: poison).
 */
	.section .text.entry, "ax"
	.global _start
_start:
	mov	x19, x0
	ldr	w1, [x19]
	mov	w2, #0x0ffa
	cmp	w1, w2
	b.ne	fail
	ldr	x0, =0x84000063		/* FFA_VERSION(1.2) */
	ldr	x1, =0x00010002
	smc	#0
	lsr	x2, x0, #16		/* the SPMC's version: 1.2 or later 1.x */
	cmp	x2, #1
	b.ne	fail
	ldr	x1, =0x00010002
	cmp	x0, x1
	b.lo	fail
	ldr	x0, =0x84000069		/* FFA_ID_GET */
	smc	#0
	ldr	x0, =0x8400008a		/* FFA_CONSOLE_LOG_32: "sp-stub up\n" (11 chars) */
	mov	x1, #11
	ldr	x2, =0x732d7073		/* "sp-s" */
	ldr	x3, =0x20627574		/* "tub " */
	ldr	x4, =0x000a7075		/* "up\n" */
	mov	x5, #0
	mov	x6, #0
	mov	x7, #0
	hvc	#0			/* the HVC conduit works too (Hafnium takes both) */
	ldr	x0, =0x8400006b		/* FFA_MSG_WAIT */
	mov	x1, #0
	mov	x2, #0
	smc	#0
serve:
	/* x1: sender[31:16] | receiver[15:0] -> swap for the response (x2 is scratch: MBZ in
	 * DIRECT_REQ/RESP, UUID in REQ2 and MBZ in RESP2). */
	ubfx	x2, x1, #16, #16
	lsl	x1, x1, #16
	and	x1, x1, #0xffff0000
	orr	x1, x1, x2
	ldr	x2, =0xc400008d		/* DIRECT_REQ2 */
	cmp	x0, x2
	b.eq	req2
	/* Hafnium: x8-x17 must be zero in a v1.2 DIRECT_RESP; x9 is scratch below. */
	mov	x8, #0
	mov	x10, #0
	mov	x11, #0
	mov	x12, #0
	mov	x13, #0
	mov	x14, #0
	mov	x15, #0
	mov	x16, #0
	mov	x17, #0
	ldr	x9, =0xdead
	cmp	x3, x9
	b.eq	fault
	ldr	x9, =0xab047
	cmp	x3, x9
	b.eq	abort
	ldr	x9, =0xf1f10001
	cmp	x3, x9
	b.eq	fw_secure
	add	x9, x9, #1
	cmp	x3, x9
	b.eq	fw_release
resp:
	add	x3, x3, #1
	mov	x2, #0
	ldr	x9, =0x8400006f		/* DIRECT_REQ_32 -> RESP_32, else RESP_64 */
	cmp	x0, x9
	ldr	x0, =0x84000070
	ldr	x9, =0xc4000070
	csel	x0, x0, x9, eq
	mov	x9, #0
	smc	#0
	b	serve
req2:
	ldr	x2, =0xdead
	cmp	x4, x2
	b.eq	fault
	add	x4, x4, #1		/* x5-x17 echoed unchanged */
	mov	x2, #0			/* x2-x3 MBZ in DIRECT_RESP2 */
	mov	x3, #0
	ldr	x0, =0xc400008e		/* DIRECT_RESP2 */
	smc	#0
	b	serve
fw_secure:
	ldr	x20, =0x090c0000	/* TZC-400 */
	ldr	x21, =0x50000000	/* W */
	ldr	w4, [x20]		/* BUILD_CONFIG */
	ldr	x5, [x21, #8]		/* not secured yet: blocked, poison */
	str	wzr, [x20, #0x8]	/* GATE_KEEPER: close filter 0 */
	ldr	w9, =0x4fffffff
	str	w9, [x20, #0x148]	/* region 2 top low = W - 1 */
	ldr	w10, [x20, #0x154]	/* region 2 id_access, for region 6 */
	ldr	w9, =0x54000000
	str	w9, [x20, #0x1c0]	/* region 6 base low = W + 64 MiB */
	ldr	w9, =0x5fffffff
	str	w9, [x20, #0x1c8]	/* region 6 top low */
	str	w10, [x20, #0x1d4]	/* region 6 id_access */
	mov	w9, #1
	str	w9, [x20, #0x1d0]	/* region 6 attributes: filter 0, no secure access */
	str	w21, [x20, #0x1a0]	/* region 5 base low = W */
	ldr	w9, =0x53ffffff
	str	w9, [x20, #0x1a8]	/* region 5 top low: 64 MiB secured */
	str	wzr, [x20, #0x1b4]	/* region 5 id_access: no NSAID */
	ldr	w9, =0xc0000001
	str	w9, [x20, #0x1b0]	/* region 5 attributes: s_rd, s_wr, filter 0 */
	mov	w9, #1
	str	w9, [x20, #0x8]		/* GATE_KEEPER: open filter 0 */
gate:
	ldr	w9, [x20, #0x8]
	tbz	w9, #16, gate		/* open_status */
	str	x6, [x21, #8]		/* secured: the secure alias works */
	ldr	x6, [x21, #8]
	ldr	w7, [x20, #0x20]	/* FAIL_ADDRESS_LOW of the blocked load */
	mov	x10, #0			/* x8-x17 MBZ in the response */
	b	resp
fw_release:
	ldr	x20, =0x090c0000
	ldr	x21, =0x50000000
	str	xzr, [x21, #8]		/* scrub before giving the page back */
	str	wzr, [x20, #0x8]	/* close */
	str	wzr, [x20, #0x1b0]	/* region 5 off */
	str	wzr, [x20, #0x1d0]	/* region 6 off */
	ldr	w9, =0x5fffffff
	str	w9, [x20, #0x148]	/* region 2 whole again */
	mov	w9, #1
	str	w9, [x20, #0x8]		/* open */
	mov	w9, #1
	str	w9, [x20, #0x14]	/* INT_CLEAR filter 0 */
	ldr	x5, [x21, #8]		/* no longer secured: blocked, poison */
	b	resp
fault:
	ldr	x9, =0x0e500000		/* not in the SP's stage-2 */
	ldr	x0, [x9]
	b	.
abort:
	ldr	x0, =0x84000090		/* FFA_ABORT */
	smc	#0
	b	.
fail:
	ldr	x0, =0x84000060		/* FFA_ERROR(-1) */
	mov	x1, #0
	mov	x2, #-1
	smc	#0
	b	.
	.ltorg
