//! The mirror against the header: C static assertions built from the Rust values, compiled
//! against `nw/linux/flexserve_uapi.h`; and the header's own names, all present here.

extern crate std;

use super::*;
use core::mem::offset_of;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

/// A struct: C name, Rust size, (field, Rust offset) in declaration order.
type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

macro_rules! layout {
    ($c:literal, $t:ty, [$($f:ident),*]) => {
        ($c, size_of::<$t>(), vec![$((stringify!($f), offset_of!($t, $f))),*])
    };
}

fn layouts() -> Vec<Layout> {
    vec![
        layout!(
            "flexserve_info",
            Info,
            [ffa_version, rxtx_size, own_id, reserved0, reserved1]
        ),
        layout!("flexserve_ffa_call", FfaCall, [x]),
        layout!("flexserve_buf_copy", BufCopy, [addr, offset, len]),
        layout!("flexserve_alloc", Alloc, [pages, id, mmap_offset]),
        layout!(
            "flexserve_mem_send",
            MemSend,
            [id, receiver, kind, access, handle, ffa_error, reserved]
        ),
        layout!(
            "flexserve_mem_reclaim",
            MemReclaim,
            [handle, ffa_error, reserved]
        ),
    ]
}

/// Every `#define` of the header: C name, Rust value.
fn constants() -> Vec<(&'static str, u64)> {
    vec![
        ("FLEXSERVE_IOC_MAGIC", IOC_MAGIC.into()),
        ("FLEXSERVE_MAX_PAGES", MAX_PAGES.into()),
        ("FLEXSERVE_SHARE", SHARE.into()),
        ("FLEXSERVE_LEND", LEND.into()),
        ("FLEXSERVE_RO", RO.into()),
        ("FLEXSERVE_RW", RW.into()),
        ("FLEXSERVE_IOC_INFO", IOC_INFO.into()),
        ("FLEXSERVE_IOC_FFA_CALL", IOC_FFA_CALL.into()),
        ("FLEXSERVE_IOC_READ_RX", IOC_READ_RX.into()),
        ("FLEXSERVE_IOC_WRITE_TX", IOC_WRITE_TX.into()),
        ("FLEXSERVE_IOC_ALLOC", IOC_ALLOC.into()),
        ("FLEXSERVE_IOC_FREE", IOC_FREE.into()),
        ("FLEXSERVE_IOC_MEM_SEND", IOC_MEM_SEND.into()),
        ("FLEXSERVE_IOC_MEM_RECLAIM", IOC_MEM_RECLAIM.into()),
    ]
}

fn header_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../linux")
}

fn header() -> String {
    let p = header_dir().join("flexserve_uapi.h");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// C that fails to compile unless every Rust size, offset and number equals the header's.
fn assertions() -> String {
    let mut c = String::from("#include <stddef.h>\n#include \"flexserve_uapi.h\"\n");
    for (name, size, fields) in layouts() {
        c += &format!(
            "_Static_assert(sizeof(struct {name}) == {size}, \"sizeof {name}: Rust {size}\");\n"
        );
        for (f, off) in fields {
            c += &format!(
                "_Static_assert(offsetof(struct {name}, {f}) == {off}, \
                 \"offsetof {name}.{f}: Rust {off}\");\n"
            );
        }
    }
    for (name, v) in constants() {
        c += &format!("_Static_assert({name} == {v}ULL, \"{name}: Rust {v:#x}\");\n");
    }
    c
}

fn compile(cc: &str, src: &Path) -> Result<(), String> {
    let out = Command::new(cc)
        .args(["-fsyntax-only", "-std=c11", "-Wall", "-Werror", "-I"])
        .arg(header_dir())
        .arg(src)
        .output()
        .map_err(|e| format!("running {cc}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

#[test]
fn mirror_matches_header_in_c() {
    let dir = std::env::temp_dir().join(format!("flexserve-uapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("check.c");
    std::fs::write(&src, assertions()).unwrap();
    // The host compiler (Rust links with it, so it is there) and, when installed, the arm64
    // one: the layout is the same on every LP64 Linux, the numbers on every asm-generic one.
    let mut ccs = vec!["cc"];
    if on_path("aarch64-linux-gnu-gcc") {
        ccs.push("aarch64-linux-gnu-gcc");
    } else {
        std::eprintln!("aarch64-linux-gnu-gcc not installed: checked with cc only");
    }
    for cc in ccs {
        if let Err(e) = compile(cc, &src) {
            panic!("{cc}: the Rust mirror differs from flexserve_uapi.h:\n{e}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn checker_catches_a_difference() {
    let dir = std::env::temp_dir().join(format!("flexserve-uapi-neg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("check.c");
    let wrong = assertions().replace(
        &format!("== {}ULL", IOC_MEM_SEND),
        &format!("== {}ULL", IOC_MEM_SEND + 1),
    );
    std::fs::write(&src, wrong).unwrap();
    let e = compile("cc", &src).expect_err("a wrong number must not compile");
    assert!(e.contains("FLEXSERVE_IOC_MEM_SEND"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The header's `#define FLEXSERVE_*` names, and each `struct flexserve_*` with its fields.
fn parse_header(h: &str) -> (BTreeSet<String>, Vec<(String, Vec<String>)>) {
    let mut defines = BTreeSet::new();
    let mut structs = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in h.lines() {
        let line = line.split("/*").next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match (current.as_mut(), words.as_slice()) {
            (None, ["#define", name, _, ..]) if name.starts_with("FLEXSERVE_") => {
                defines.insert(name.to_string());
            }
            (None, ["struct", name, "{"]) => current = Some((name.to_string(), Vec::new())),
            (Some(_), ["};"]) => structs.extend(current.take()),
            (Some((_, fields)), [_ty, field]) => {
                let f = field.trim_end_matches(';');
                fields.push(f.split('[').next().unwrap_or(f).to_string());
            }
            (Some(_), []) => {}
            (Some((s, _)), other) => panic!("struct {s}: cannot read {other:?}"),
            _ => {}
        }
    }
    assert!(current.is_none(), "unterminated struct");
    (defines, structs)
}

#[test]
fn header_declares_nothing_the_mirror_lacks() {
    let (defines, structs) = parse_header(&header());
    let mirrored: BTreeSet<String> = constants().iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        defines, mirrored,
        "#defines in the header vs the Rust mirror"
    );
    let rust: Vec<(String, Vec<String>)> = layouts()
        .into_iter()
        .map(|(n, _, f)| {
            (
                n.to_string(),
                f.iter().map(|(f, _)| f.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        structs, rust,
        "structs and fields in the header vs the Rust mirror"
    );
}

#[test]
fn ioctl_numbers_by_hand() {
    // _IOWR(0xF5, 1, 144 bytes) and _IOW(0xF5, 5, 4 bytes), worked out from the bit layout.
    assert_eq!(IOC_FFA_CALL, 0xC090_F501);
    assert_eq!(IOC_FREE, 0x4004_F505);
    assert_eq!(size_of::<MemSend>(), 24);
}

/// A host harness for `flexserve_desc.h`: builds the descriptor the module writes into TX for
/// frames `argv[4..]` (hex), kind `argv[1]`, access `argv[2]`, EMAD size `argv[3]`, and prints
/// it to stdout (receiver 0x8001, sender 0x0005).
const DESC_HARNESS: &str = r#"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "flexserve_uapi.h"
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
#define cpu_to_le16(x) ((uint16_t)(x))
#define cpu_to_le32(x) ((uint32_t)(x))
#define cpu_to_le64(x) ((uint64_t)(x))
#define PAGE_SIZE 4096UL
#define PFN_PHYS(pfn) ((uint64_t)(pfn) << 12)
struct page { unsigned long pfn; };
#define page_to_pfn(p) ((p)->pfn)
#include "flexserve_desc.h"

int main(int argc, char **argv)
{
	static unsigned char tx[1 << 20];
	static struct page frames[1024], *pages[1024];
	struct flexserve_mem_send s = { .receiver = 0x8001 };
	u32 n = argc - 4, i = 0, head, total;

	s.kind = atoi(argv[1]);
	s.access = atoi(argv[2]);
	for (u32 k = 0; k < n; k++) {
		frames[k].pfn = strtoul(argv[4 + k], NULL, 16);
		pages[k] = &frames[k];
	}
	head = fs_desc_head(tx, atoi(argv[3]), 5, &s, pages, n, &total);
	fs_ranges(pages, n, &i, (struct ffa_range *)(tx + head), ~0U);
	fwrite(tx, 1, total, stdout);
	return i != n;
}
"#;

#[test]
fn module_descriptor_parses_with_ffa() {
    use ffa::memory::{
        DataAccess, DescKind, EmadSize, InstructionAccess, MemRange, MemRegionAttributes,
        MemTransaction, ParseOptions, SendKind,
    };
    let dir = std::env::temp_dir().join(format!("flexserve-desc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("desc.c");
    let bin = dir.join("desc");
    std::fs::write(&src, DESC_HARNESS).unwrap();
    let out = Command::new("cc")
        .args([
            "-std=gnu11",
            "-Wall",
            "-Werror",
            "-Wno-unused-function",
            "-I",
        ])
        .arg(header_dir())
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Frames in buffer order: a run of 3, one alone, a run of 2 that is not after the first.
    let frames = ["100", "101", "102", "200", "301", "302"];
    let want = vec![
        MemRange {
            address: 0x10_0000,
            page_count: 3,
        },
        MemRange {
            address: 0x20_0000,
            page_count: 1,
        },
        MemRange {
            address: 0x30_1000,
            page_count: 2,
        },
    ];
    for (kind, send, emad) in [
        (LEND, SendKind::Lend, EmadSize::V1_2),
        (SHARE, SendKind::Share, EmadSize::V1_2),
        (LEND, SendKind::Lend, EmadSize::V1_1),
    ] {
        for (access, data) in [(RW, DataAccess::ReadWrite), (RO, DataAccess::ReadOnly)] {
            let out = Command::new(&bin)
                .args([kind, access, emad.bytes() as u8].map(|v| v.to_string()))
                .args(frames)
                .output()
                .unwrap();
            assert!(out.status.success());
            let opts = ParseOptions {
                expected_sender: Some(5),
                emad_size: Some(emad),
            };
            let t = MemTransaction::parse(&out.stdout, DescKind::Send(send), opts)
                .unwrap_or_else(|e| panic!("{send:?} {emad:?}: {e}"));
            assert_eq!(t.ranges, want);
            assert_eq!(t.total_pages(), 6);
            assert_eq!(t.attributes, MemRegionAttributes::for_send(send, 1));
            assert_eq!(t.flags.0, 0);
            assert_eq!(t.handle.0, 0);
            let [r] = t.receivers.as_slice() else {
                panic!("{:?}", t.receivers)
            };
            assert_eq!(r.perm.endpoint_id, 0x8001);
            assert_eq!(r.perm.data_access, data);
            assert_eq!(r.perm.instruction_access, InstructionAccess::NotSpecified);
            assert!(!r.perm.non_retrieval_borrower);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
