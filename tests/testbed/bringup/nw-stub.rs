//! Bring-up stand-in for the normal-world client (until tests/nw-client lands): NS-EL1, MMU off,
//! entered at 0x40000000 with x0 = the boot-config block. Exercises the SPMC's FF-A interface, measures
//! direct-message round trips, checks LEND enforcement (blocked load, store, LDP and call into a
//! lent page; RECLAIM), then ends the run with TESTBED_EXIT (0 = all checks passed).
//! Built with plain `rustc` by build.sh (no crate of its own).
#![no_std]
#![no_main]

use core::fmt::Write;

const UART: usize = 0x0900_0000;
const TX: u64 = 0x4100_0000;
const RX: u64 = 0x4100_1000;
const SP: u64 = 0x8001;
const UUID: [u32; 4] = [0x1234_5678, 0x9abc_def0, 0x1122_3344, 0x5566_7788];
const ROUND_TRIPS: u64 = 2000;

core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "  mov x19, x0",
    "  mov x1, #(3 << 20)", // CPACR_EL1.FPEN: Rust uses SIMD registers
    "  msr cpacr_el1, x1",
    "  adr x1, vectors",
    "  msr vbar_el1, x1",
    "  isb",
    "  ldr x1, =0x40100000",
    "  mov sp, x1",
    "  mov x0, x19",
    "  bl main",
    "  b .",
    ".balign 0x800",
    "vectors:",
    ".rept 16",
    "  .balign 0x80",
    "  b exception",
    ".endr",
    ".ltorg",
);

struct Uart;
impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            // SAFETY: the NS PL011 data register; polling is not needed on QEMU.
            unsafe { core::ptr::write_volatile(UART as *mut u32, u32::from(b)) };
        }
        Ok(())
    }
}

macro_rules! say { ($($t:tt)*) => {{ let _ = writeln!(Uart, $($t)*); }} }

type Regs = [u64; 18];

fn smc(a: &[u64]) -> Regs {
    let mut r = [0u64; 18];
    r[..a.len()].copy_from_slice(a);
    // SAFETY: an SMCCC call; x0-x17 are the only registers the callee changes.
    unsafe {
        core::arch::asm!("smc #0",
            inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
            inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
            inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
            inout("x12") r[12], inout("x13") r[13], inout("x14") r[14], inout("x15") r[15],
            inout("x16") r[16], inout("x17") r[17], options(nostack));
    }
    r
}

fn counter() -> u64 {
    let v: u64;
    // SAFETY: CNTHCTL_EL2.EL1PCTEN is set by the testbed.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v) };
    v
}
fn freq() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v) };
    v
}

const ERROR: u64 = 0x8400_0060;
const SUCCESS: u64 = 0x8400_0061;

fn err(code: i64) -> (u64, u64) {
    (ERROR, code as u32 as u64)
}

struct Checks {
    passed: u32,
    failed: u32,
}
impl Checks {
    /// One `PASS name` / `FAIL name: registers` line per check, as xtask's verdict reads them.
    fn check(&mut self, what: &str, ok: bool, got: &Regs) {
        if ok {
            self.passed += 1;
            say!("PASS {what}");
        } else {
            self.failed += 1;
            say!(
                "FAIL {what}: x0={:#x} x1={:#x} x2={:#x} x3={:#x}",
                got[0],
                got[1],
                got[2],
                got[3]
            );
        }
    }
    fn expect(&mut self, what: &str, got: Regs, want: (u64, u64)) -> Regs {
        self.check(what, (got[0], got[2]) == want, &got);
        got
    }
}

#[unsafe(no_mangle)]
extern "C" fn main(cfg: u64) -> ! {
    // SAFETY: the testbed copied the boot-config block (16-byte slot header, then the text) there.
    let cfg = unsafe {
        let len = core::ptr::read_volatile((cfg + 4) as *const u32) as usize;
        core::slice::from_raw_parts((cfg + 16) as *const u8, len.min(0x1000))
    };
    // SAFETY: UARTCR of the NS PL011: UARTEN | TXE | RXE.
    unsafe { core::ptr::write_volatile((UART + 0x30) as *mut u32, 0x301) };
    say!(
        "nw-stub: up, boot config {:?}",
        core::str::from_utf8(cfg).unwrap_or("?")
    );
    let mut c = Checks {
        passed: 0,
        failed: 0,
    };
    let u = UUID.map(u64::from);
    let (ulo, uhi) = (u[0] | u[1] << 32, u[2] | u[3] << 32);

    let v = smc(&[0x8400_0063, 0x10002]);
    // The SPMC answers its own version (1.2 or a later 1.x) and negotiates 1.2 for us.
    c.check("VERSION 1.2", v[0] >> 16 == 1 && v[0] & 0xffff >= 2, &v);
    c.expect("ID_GET", smc(&[0x8400_0069]), (SUCCESS, 0));
    c.expect("SPM_ID_GET", smc(&[0x8400_0085]), (SUCCESS, 0x8000));
    c.expect(
        "FEATURES(DIRECT_REQ_32)",
        smc(&[0x8400_0064, 0x8400_006F]),
        (SUCCESS, 0),
    );
    c.expect(
        "FEATURES(MSG_WAIT) from NW",
        smc(&[0x8400_0064, 0x8400_006B]),
        err(-1),
    );
    let v = smc(&[0x8400_0063, 0x10001]);
    c.check("VERSION change after lock", v[0] as u32 as i32 == -1, &v);
    c.expect(
        "PARTITION_INFO_GET without RX",
        smc(&[0x8400_0068, u[0], u[1], u[2], u[3]]),
        err(-4),
    );
    c.expect("RXTX_MAP", smc(&[0xC400_0066, TX, RX, 1]), (SUCCESS, 0));
    c.expect("RXTX_MAP twice", smc(&[0xC400_0066, TX, RX, 1]), err(-6));
    c.expect(
        "PARTITION_INFO_GET count, nil",
        smc(&[0x8400_0068, 0, 0, 0, 0, 1]),
        (SUCCESS, 1),
    );
    let r = c.expect(
        "PARTITION_INFO_GET by UUID",
        smc(&[0x8400_0068, u[0], u[1], u[2], u[3]]),
        (SUCCESS, 1),
    );
    // SAFETY: the SPMC wrote one descriptor into our RX page.
    let id = unsafe { core::ptr::read_volatile(RX as *const u16) };
    c.check(
        "descriptor id 0x8001, size 24",
        id == 0x8001 && r[3] == 24,
        &r,
    );
    c.expect(
        "PARTITION_INFO_GET RX busy",
        smc(&[0x8400_0068, 0, 0, 0, 0]),
        err(-4),
    );
    c.expect("RX_RELEASE", smc(&[0x8400_0065]), (SUCCESS, 0));
    c.expect(
        "PARTITION_INFO_GET nil",
        smc(&[0x8400_0068, 0, 0, 0, 0]),
        (SUCCESS, 1),
    );
    c.expect("RX_RELEASE", smc(&[0x8400_0065]), (SUCCESS, 0));
    c.expect(
        "PARTITION_INFO_GET bad UUID",
        smc(&[0x8400_0068, 1, 2, 3, 4]),
        err(-2),
    );

    let r = smc(&[0x8400_006F, SP, 0, 41, 1, 2, 3, 4]);
    c.check(
        "DIRECT_REQ_32 -> RESP_32 x3+1",
        r[0] == 0x8400_0070 && r[1] == 0x8001_0000 && r[3] == 42 && r[7] == 4,
        &r,
    );
    let r = smc(&[0xC400_006F, SP, 0, 1 << 40, 5]);
    c.check(
        "DIRECT_REQ_64",
        r[0] == 0xC400_0070 && r[3] == (1 << 40) + 1 && r[4] == 5,
        &r,
    );
    let mut req2 = [0u64; 18];
    req2[..5].copy_from_slice(&[0xC400_008D, SP, ulo, uhi, 100]);
    for (i, x) in req2.iter_mut().enumerate().skip(5) {
        *x = i as u64;
    }
    let r = smc(&req2);
    c.check(
        "DIRECT_REQ2 -> RESP2",
        r[0] == 0xC400_008E && r[4] == 101 && (5..18).all(|i| r[i] == i as u64),
        &r,
    );
    c.expect(
        "DIRECT_REQ2 wrong UUID",
        smc(&[0xC400_008D, SP, 1, 2, 100]),
        err(-2),
    );
    c.expect(
        "DIRECT_REQ to unknown 0x8002",
        smc(&[0x8400_006F, 0x8002, 0, 1]),
        err(-2),
    );
    c.expect("DIRECT_REQ w2 MBZ", smc(&[0x8400_006F, SP, 1, 1]), err(-2));
    c.expect("MSG_WAIT from NW", smc(&[0x8400_006B]), err(-1));
    c.expect("NOTIFICATION_BIND", smc(&[0x8400_007F]), err(-1));
    let r = smc(&[0x8200_0000]);
    c.check("non-FF-A SMC -> SMCCC NOT_SUPPORTED", r[0] == u64::MAX, &r);

    let t0 = counter();
    let mut ok = true;
    for i in 0..ROUND_TRIPS {
        let r = smc(&[0x8400_006F, SP, 0, i]);
        ok &= r[0] == 0x8400_0070 && r[3] == i + 1;
    }
    let dt = counter() - t0;
    c.check("round trips", ok, &[0; 18]);
    let us = dt * 1_000_000 / freq();
    say!(
        "nw-stub: {ROUND_TRIPS} DIRECT_REQ_32 round trips in {us} us emulated: {} ns each, {} per second",
        us * 1000 / ROUND_TRIPS,
        ROUND_TRIPS * 1_000_000 / us.max(1)
    );

    let lend_off = core::str::from_utf8(cfg).is_ok_and(|t| t.contains("lend-enforcement=off"));
    if lend_off {
        lend_unenforced(&mut c);
    } else {
        enforcement(&mut c);
    }
    firewall(&mut c);

    // Last: make the SP fail (stage-2 fault, or FFA_ABORT with scenario=sp-abort), then check
    // that it stays aborted.
    let abort = core::str::from_utf8(cfg).is_ok_and(|t| t.contains("scenario=sp-abort"));
    let trigger = if abort { 0xab047 } else { 0xdead };
    c.expect(
        "request that fails the SP -> ABORTED",
        smc(&[0xC400_006F, SP, 0, trigger]),
        err(-8),
    );
    c.expect(
        "later request -> ABORTED",
        smc(&[0x8400_006F, SP, 0, 1]),
        err(-8),
    );

    say!("{} passed, {} failed", c.passed, c.failed);
    smc(&[0xC200_FF00, u64::from(c.failed != 0)]);
    loop {}
}

const LENT: u64 = 0x4200_0000;
const POISON: u64 = 0xdead_beef_dead_beef;

/// TESTBED_BLOCKED_ACCESSES: (count, last address, last details).
fn blocked() -> (u64, u64, u64) {
    let r = smc(&[0xC200_FF01]);
    (r[1], r[2], r[3])
}

/// LEND a page to the SP (which never retrieves it here), then touch it: the testbed must block
/// and report each access (load -> poison, store dropped, LDP and a call into the page skipped
/// and flagged) and keep this stub running; RECLAIM gives the page back unchanged.
fn enforcement(c: &mut Checks) {
    // SAFETY: LENT is NS DRAM of this stub's, unused otherwise.
    unsafe { core::ptr::write_volatile((LENT + 8) as *mut u64, 0x1234) };
    // Transaction descriptor: header, one 32-byte EMAD (0x8001, RW), composite, one range.
    let mut d = [0u8; 112];
    let mut put = |off: usize, v: &[u8]| d[off..off + v.len()].copy_from_slice(v);
    // Memory attributes left 0: a single-borrower LEND may not name a type (as Hafnium).
    put(24, &32u32.to_le_bytes());
    put(28, &1u32.to_le_bytes());
    put(32, &48u32.to_le_bytes());
    put(48, &0x8001u16.to_le_bytes());
    put(50, &[0b10]); // RW
    put(52, &80u32.to_le_bytes());
    put(80, &1u32.to_le_bytes());
    put(84, &1u32.to_le_bytes());
    put(96, &LENT.to_le_bytes());
    put(104, &1u32.to_le_bytes());
    for (i, b) in d.iter().enumerate() {
        // SAFETY: our TX page.
        unsafe { core::ptr::write_volatile((TX + i as u64) as *mut u8, *b) };
    }
    let r = smc(&[0x8400_0072, 112, 112]);
    c.check("MEM_LEND one page", r[0] == SUCCESS, &r);
    let handle = (r[2], r[3]);
    // Hafnium-style handle: a share-state index, bit 63 (allocator = hypervisor) clear.
    c.check("lend handle is SPMC-allocated", r[3] >> 31 == 0, &r);
    let before = blocked().0;
    let info = |kind: u64, unemulated: bool| {
        kind | 1 << 8 | 0x8001 << 16 | if unemulated { 1 << 32 } else { 0 }
    };

    let v: u64;
    // SAFETY: a load from the lent page; the testbed emulates it (poison) and skips it.
    unsafe { core::arch::asm!("ldr {v}, [{a}]", a = in(reg) LENT + 8, v = out(reg) v) };
    let b = blocked();
    c.check(
        "blocked read gets poison and is reported",
        v == POISON && b == (before + 1, LENT + 8, info(1, false)),
        &[v, b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    // SAFETY: a store to the lent page; dropped by the testbed.
    unsafe { core::arch::asm!("str {v}, [{a}]", a = in(reg) LENT + 8, v = in(reg) 0x5555u64) };
    let b = blocked();
    c.check(
        "blocked write is reported",
        b == (before + 2, LENT + 8, info(2, false)),
        &[b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let (mut x, mut y) = (1u64, 2u64);
    // SAFETY: a load pair (no syndrome): skipped without touching the registers.
    unsafe {
        core::arch::asm!("ldp {x}, {y}, [{a}]", a = in(reg) LENT + 16, x = inout(reg) x, y = inout(reg) y)
    };
    let b = blocked();
    c.check(
        "blocked LDP skipped and flagged unemulated",
        (x, y) == (1, 2) && b == (before + 3, LENT + 16, info(1, true)),
        &[x, y, b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    // SAFETY: a call into the lent page: the fetch faults and the testbed resumes at x30.
    unsafe { core::arch::asm!("blr {a}", a = in(reg) LENT, out("x30") _, clobber_abi("C")) };
    let b = blocked();
    c.check(
        "blocked fetch returns to the caller, flagged",
        b == (before + 4, LENT, info(3, true)),
        &[b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    c.expect(
        "MEM_RECLAIM",
        smc(&[0x8400_0077, handle.0, handle.1, 0]),
        (SUCCESS, 0),
    );
    // SAFETY: the page is ours again.
    let v = unsafe { core::ptr::read_volatile((LENT + 8) as *const u64) };
    let b = blocked();
    c.check(
        "reclaimed page readable, blocked store was dropped",
        v == 0x1234 && b.0 == before + 4,
        &[v, b.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
}

/// Boot config `lend-enforcement=off`: a lent page stays in this stub's stage-2 (no NS
/// hypervisor on FVP / RK3588): reads and writes reach it, nothing is reported.
fn lend_unenforced(c: &mut Checks) {
    // SAFETY: LENT is NS DRAM of this stub's, unused otherwise.
    unsafe { core::ptr::write_volatile((LENT + 8) as *mut u64, 0x1234) };
    let mut d = [0u8; 112];
    let mut put = |off: usize, v: &[u8]| d[off..off + v.len()].copy_from_slice(v);
    put(24, &32u32.to_le_bytes());
    put(28, &1u32.to_le_bytes());
    put(32, &48u32.to_le_bytes());
    put(48, &0x8001u16.to_le_bytes());
    put(50, &[0b10]);
    put(52, &80u32.to_le_bytes());
    put(80, &1u32.to_le_bytes());
    put(84, &1u32.to_le_bytes());
    put(96, &LENT.to_le_bytes());
    put(104, &1u32.to_le_bytes());
    for (i, b) in d.iter().enumerate() {
        // SAFETY: our TX page.
        unsafe { core::ptr::write_volatile((TX + i as u64) as *mut u8, *b) };
    }
    let r = smc(&[0x8400_0072, 112, 112]);
    c.check("MEM_LEND one page (lend enforcement off)", r[0] == SUCCESS, &r);
    let before = blocked().0;
    // SAFETY: the lent page is still mapped for us: nothing enforces the lend.
    let v = unsafe { core::ptr::read_volatile((LENT + 8) as *const u64) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile((LENT + 8) as *mut u64, 0x5678) };
    c.check(
        "lent page still readable and writable, nothing blocked",
        v == 0x1234 && blocked().0 == before,
        &[v, blocked().0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    c.expect(
        "MEM_RECLAIM",
        smc(&[0x8400_0077, r[2], r[3], 0]),
        (SUCCESS, 0),
    );
}

/// The Flex-Mem window's first page and the TZC-400 report codes (testbed-layout `control`).
const W: u64 = 0x5000_0000;
const OWNER_FIREWALL: u64 = 5;
const BY_SP: u64 = 1 << 33;
const SECURE: u64 = 1 << 34;

/// The SP stub secures window page W through the emulated TZC-400 (request 0xf1f1_0001) and gives
/// it back (0xf1f1_0002): its secure accesses are blocked before and after, work in between; this stub's
/// accesses are blocked (firewall region 5) while W is secured, cache maintenance included.
fn firewall(c: &mut Checks) {
    // SAFETY: W is NS DRAM of the share window, unused by this stub otherwise.
    unsafe { core::ptr::write_volatile((W + 8) as *mut u64, 0x1234) };
    let before = blocked().0;
    // DIRECT_REQ_64: the answer carries 64-bit values.
    let t0 = counter();
    let r = smc(&[0xC400_006F, SP, 0, 0xf1f1_0001, 0, 0, 0xabcd]);
    let secure_us = (counter() - t0) * 1_000_000 / freq();
    c.check(
        "SP reads BUILD_CONFIG (9 regions, 1 filter)",
        r[0] == 0xC400_0070 && r[3] == 0xf1f1_0002 && r[4] & 0x1f == 8 && (r[4] >> 24) & 3 == 0,
        &r,
    );
    let b = blocked();
    c.check(
        "SP secure read of an unsecured window page: poison, reported, latched",
        r[5] == POISON
            && r[7] == W + 8
            && b == (before + 1, W + 8, 1 | OWNER_FIREWALL << 8 | 2 << 16 | BY_SP | SECURE),
        &[r[5], r[7], b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    c.check("SP secure store/load once secured", r[6] == 0xabcd, &r);
    let v: u64;
    // SAFETY: a load from the secured page; the testbed blocks it (poison) and skips it.
    unsafe { core::arch::asm!("ldr {v}, [{a}]", a = in(reg) W + 8, v = out(reg) v) };
    let b = blocked();
    c.check(
        "NW read of a secured page: poison, firewall region 5",
        v == POISON && b == (before + 2, W + 8, 1 | OWNER_FIREWALL << 8 | 5 << 16),
        &[v, b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    // SAFETY: cache maintenance on the secured page: trapped (HCR_EL2.TPCP), reported, skipped.
    unsafe { core::arch::asm!("dc civac, {a}", a = in(reg) W + 0x40) };
    let b = blocked();
    c.check(
        "NW DC CIVAC of a secured page reported",
        b == (before + 3, W + 0x40, 4 | OWNER_FIREWALL << 8 | 5 << 16),
        &[b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    // SAFETY: cache maintenance on a page we still have: completed, nothing reported.
    unsafe { core::arch::asm!("dc cvac, {a}", a = in(reg) W + 0x400_0000) };
    c.check("NW DC CVAC of its own page not reported", blocked().0 == before + 3, &[0; 18]);
    let before = before + 1;
    // SAFETY: the page above the 64 MiB stays ours.
    let n = unsafe { core::ptr::read_volatile((W + 0x400_0008) as *const u64) };
    c.check("neighbour page readable", blocked().0 == before + 2, &[n; 18]);
    let t0 = counter();
    let r = smc(&[0xC400_006F, SP, 0, 0xf1f1_0002]);
    let release_us = (counter() - t0) * 1_000_000 / freq();
    say!(
        "nw-stub: SP secures 64 MiB of the window through the TZC model in {secure_us} us, \
         gives it back in {release_us} us (guest time, incl. the testbed's stage-2 updates)"
    );
    c.check(
        "released: SP secure read blocked again",
        r[3] == 0xf1f1_0003 && r[5] == POISON && blocked().0 == before + 3,
        &r,
    );
    // SAFETY: the TZC-400's programming interface is not in this stub's stage-2: a load there
    // is blocked (not mapped) and answered with poison.
    let id = unsafe { core::ptr::read_volatile(0x090c_0ff0 as *const u32) };
    let b = blocked();
    c.check(
        "NW cannot reach the TZC-400 registers",
        u64::from(id) == POISON & 0xffff_ffff && b == (before + 4, 0x090c_0ff0, 1 | 4 << 8),
        &[u64::from(id), b.0, b.1, b.2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let before = before + 1;
    // SAFETY: the page is NS again.
    let v = unsafe { core::ptr::read_volatile((W + 8) as *const u64) };
    c.check(
        "released page readable and scrubbed",
        v == 0 && blocked().0 == before + 3,
        &[v; 18],
    );
}

#[unsafe(no_mangle)]
extern "C" fn exception() -> ! {
    let (esr, elr): (u64, u64);
    // SAFETY: reading EL1 syndrome registers.
    unsafe { core::arch::asm!("mrs {}, esr_el1", "mrs {}, elr_el1", out(reg) esr, out(reg) elr) };
    say!("nw-stub: exception ESR={esr:#x} ELR={elr:#x}");
    smc(&[0xC200_FF00, 2]);
    loop {}
}

#[panic_handler]
fn panic(i: &core::panic::PanicInfo) -> ! {
    say!("nw-stub: panic {i}");
    smc(&[0xC200_FF00, 2]);
    loop {}
}
