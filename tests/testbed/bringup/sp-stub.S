/*
 * Bring-up stand-in for the SP (until flexserve-sp lands): S-EL1, MMU off, entered at
 * load-address + 0x4000 with x0 = FF-A boot-info blob. Calls FFA_VERSION, FFA_ID_GET,
 * FFA_CONSOLE_LOG, FFA_MSG_WAIT, then answers direct requests:
 *   DIRECT_REQ_32/64: x3 += 1, x4-x7 echoed, as DIRECT_RESP of the same width;
 *   DIRECT_REQ2:      x4 += 1, x5-x17 echoed, as DIRECT_RESP2;
 *   x3 (or x4 for REQ2) == 0xdead: load from an unmapped IPA (stage-2 fault, "SP failed");
 *   x3 == 0xab047: FFA_ABORT (NOT_SUPPORTED for this v1.2 stand-in, as Hafnium: then FFA_ERROR).
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
	ldr	x1, =0x00010002
	cmp	x0, x1
	b.ne	fail
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
fault:
	ldr	x9, =0x0e500000		/* not in the SP's stage-2 */
	ldr	x0, [x9]
	b	.
abort:
	ldr	x0, =0x84000090		/* FFA_ABORT */
	smc	#0
	b	fail			/* NOT_SUPPORTED for a v1.2 SP (as Hafnium): FFA_ERROR */
fail:
	ldr	x0, =0x84000060		/* FFA_ERROR(-1) */
	mov	x1, #0
	mov	x2, #-1
	smc	#0
	b	.
	.ltorg
