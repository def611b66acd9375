//! The FF-A partition manifest (TF-A `ffa-manifest-binding.rst`, Hafnium `parse_ffa_manifest`;
//! platform-facts.md sec. 3.1), parsed once into a validated view.

use fdt::{Fdt, node::FdtNode};

use ffa::Uuid;

pub const MAX_UUIDS: usize = 4;
pub const MAX_REGIONS: usize = 16;

/// `attributes` bit: the region is non-secure memory (mapped in the SP's NS IPA space).
pub const ATTR_NS: u32 = 0x8;

/// messaging-method bits (Hafnium `inc/vmapi/hf/ffa.h`).
pub mod msg {
    pub const DIRECT_REQ_RECV: u32 = 1 << 0;
    pub const DIRECT_REQ_SEND: u32 = 1 << 1;
    pub const INDIRECT: u32 = 1 << 2;
    pub const DIRECT_REQ2_RECV: u32 = 1 << 9;
    pub const DIRECT_REQ2_SEND: u32 = 1 << 10;
}

/// A region's node name (before any `@unit`), as the SP finds its regions by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Name {
    bytes: [u8; 24],
    len: u8,
}

impl Name {
    /// `None` if longer than 24 bytes.
    pub fn new(s: &str) -> Option<Self> {
        let mut n = Name::default();
        n.bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        n.len = s.len() as u8;
        Some(n)
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: Name,
    /// Absolute base address (IPA == PA).
    pub base: u64,
    pub pages: u64,
    /// Manifest attributes: 0x1 R, 0x2 W, 0x4 X, 0x8 NS.
    pub attributes: u32,
    pub device: bool,
    /// A device region's first `interrupts` entry: its INTID (an SPI, 32-1019) and attributes
    /// (TF-A's binding: priority [7:0], secure [8], level [9], type [11:10]).
    pub interrupt: Option<(u32, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpManifest {
    pub uuids: [Uuid; MAX_UUIDS],
    pub uuid_count: usize,
    pub id: Option<u16>,
    pub ffa_version: u32,
    pub exec_ctx_count: u16,
    pub load_address: u64,
    pub entrypoint_offset: u64,
    pub messaging_method: u32,
    pub gp_register_num: Option<u32>,
    /// The boot-info node asks for the manifest to be passed (`ffa_manifest`).
    pub boot_info_manifest: bool,
    pub regions: [Region; MAX_REGIONS],
    pub region_count: usize,
}

impl SpManifest {
    pub fn uuids(&self) -> &[Uuid] {
        &self.uuids[..self.uuid_count]
    }
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// Not a flattened device tree (bad magic, truncated, ...).
    NotDtb,
    /// Root `compatible` is not `arm,ffa-manifest-1.0` (1.1 `services` nodes are not supported).
    Compatible,
    Missing(&'static str),
    /// A property has the wrong size or a value the testbed cannot honour.
    BadValue(&'static str, u64),
    TooMany(&'static str),
}

impl core::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ManifestError::NotDtb => write!(f, "manifest is not a valid DTB"),
            ManifestError::Compatible => write!(
                f,
                "root compatible is not \"arm,ffa-manifest-1.0\" (services nodes unsupported)"
            ),
            ManifestError::Missing(p) => write!(f, "missing property `{p}`"),
            ManifestError::BadValue(p, v) => write!(f, "bad value {v:#x} for `{p}`"),
            ManifestError::TooMany(p) => write!(f, "too many `{p}` entries"),
        }
    }
}

/// Reads a u32 (one cell) or u64 (two cells) property.
fn int(node: FdtNode<'_, '_>, name: &'static str) -> Result<Option<u64>, ManifestError> {
    let Some(p) = node.property(name) else {
        return Ok(None);
    };
    match p.value.len() {
        4 => Ok(Some(u64::from(u32::from_be_bytes(
            p.value
                .try_into()
                .map_err(|_| ManifestError::BadValue(name, 0))?,
        )))),
        8 => Ok(Some(u64::from_be_bytes(
            p.value
                .try_into()
                .map_err(|_| ManifestError::BadValue(name, 0))?,
        ))),
        n => Err(ManifestError::BadValue(name, n as u64)),
    }
}

fn required(node: FdtNode<'_, '_>, name: &'static str) -> Result<u64, ManifestError> {
    int(node, name)?.ok_or(ManifestError::Missing(name))
}

fn fits<T: TryFrom<u64>>(name: &'static str, v: u64) -> Result<T, ManifestError> {
    T::try_from(v).map_err(|_| ManifestError::BadValue(name, v))
}

fn is_compatible(node: FdtNode<'_, '_>, what: &str) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| s == what))
}

/// Parses and validates an SP manifest DTB.
pub fn parse(dtb: &[u8]) -> Result<SpManifest, ManifestError> {
    let fdt = Fdt::new(dtb).map_err(|_| ManifestError::NotDtb)?;
    let root = fdt.find_node("/").ok_or(ManifestError::NotDtb)?;
    if !is_compatible(root, "arm,ffa-manifest-1.0") {
        return Err(ManifestError::Compatible);
    }

    let uuid_prop = root
        .property("uuid")
        .ok_or(ManifestError::Missing("uuid"))?;
    let v = uuid_prop.value;
    if v.is_empty() || v.len() % 16 != 0 {
        return Err(ManifestError::BadValue("uuid", v.len() as u64));
    }
    let uuid_count = v.len() / 16;
    if uuid_count > MAX_UUIDS {
        return Err(ManifestError::TooMany("uuid"));
    }
    let mut uuids = [Uuid::NIL; MAX_UUIDS];
    for (u, chunk) in uuids.iter_mut().zip(v.chunks_exact(16)) {
        let mut cells = [0u32; 4];
        for (w, c) in cells.iter_mut().zip(chunk.chunks_exact(4)) {
            *w = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        *u = Uuid::from_cells(cells);
        if u.is_nil() {
            return Err(ManifestError::BadValue("uuid", 0));
        }
    }

    let ffa_version: u32 = fits("ffa-version", required(root, "ffa-version")?)?;
    if ffa_version >> 16 != 1 || ffa_version & 0xffff > 2 {
        return Err(ManifestError::BadValue(
            "ffa-version",
            u64::from(ffa_version),
        ));
    }
    let el = required(root, "exception-level")?;
    if el != 2 {
        // 2 = S-EL1; the testbed runs S-EL1 partitions only.
        return Err(ManifestError::BadValue("exception-level", el));
    }
    let state = required(root, "execution-state")?;
    if state != 0 {
        return Err(ManifestError::BadValue("execution-state", state));
    }
    let exec_ctx_count: u16 = fits(
        "execution-ctx-count",
        required(root, "execution-ctx-count")?,
    )?;
    if exec_ctx_count == 0 || exec_ctx_count > MAX_EXEC_CTX_COUNT {
        return Err(ManifestError::BadValue(
            "execution-ctx-count",
            u64::from(exec_ctx_count),
        ));
    }
    let load_address = required(root, "load-address")?;
    let entrypoint_offset = int(root, "entrypoint-offset")?.unwrap_or(0);
    let messaging_method: u32 = fits("messaging-method", required(root, "messaging-method")?)?;
    let id = int(root, "id")?.map(|v| fits::<u16>("id", v)).transpose()?;
    if let Some(id) = id
        && id & 0x8000 == 0
    {
        return Err(ManifestError::BadValue("id", u64::from(id)));
    }
    let gp_register_num = int(root, "gp-register-num")?
        .map(|v| fits::<u32>("gp-register-num", v))
        .transpose()?;
    if let Some(r) = gp_register_num
        && r > 3
    {
        return Err(ManifestError::BadValue("gp-register-num", u64::from(r)));
    }
    if int(root, "xlat-granule")?.unwrap_or(0) != 0 {
        return Err(ManifestError::BadValue("xlat-granule", 1));
    }

    let mut m = SpManifest {
        uuids,
        uuid_count,
        id,
        ffa_version,
        exec_ctx_count,
        load_address,
        entrypoint_offset,
        messaging_method,
        gp_register_num,
        boot_info_manifest: false,
        regions: [Region {
            name: Name::default(),
            base: 0,
            pages: 0,
            attributes: 0,
            device: false,
            interrupt: None,
        }; MAX_REGIONS],
        region_count: 0,
    };

    for child in root.children() {
        if is_compatible(child, "arm,ffa-manifest-boot-info") {
            m.boot_info_manifest = child.property("ffa_manifest").is_some();
            continue;
        }
        let device = if is_compatible(child, "arm,ffa-manifest-memory-regions") {
            false
        } else if is_compatible(child, "arm,ffa-manifest-device-regions") {
            true
        } else {
            continue;
        };
        for r in child.children() {
            let pages = required(r, "pages-count")?;
            let attributes: u32 = fits("attributes", required(r, "attributes")?)?;
            let base = match (
                int(r, "base-address")?,
                int(r, "load-address-relative-offset")?,
            ) {
                (Some(b), None) => b,
                (None, Some(off)) if !device => load_address
                    .checked_add(off)
                    .ok_or(ManifestError::BadValue("load-address-relative-offset", off))?,
                _ => return Err(ManifestError::Missing("base-address")),
            };
            // R, RW, RX, RWX for memory (+NS); R or RW for devices (+NS).
            let perms = attributes & 0x7;
            let ok = attributes & !0xf == 0 && perms & 1 != 0 && !(device && perms & 4 != 0);
            if !ok || pages == 0 {
                return Err(ManifestError::BadValue("attributes", u64::from(attributes)));
            }
            if m.region_count == MAX_REGIONS {
                return Err(ManifestError::TooMany("regions"));
            }
            // `interrupts = <intid attributes>...` (TF-A's binding); the first pair counts.
            let interrupt = match r.property("interrupts") {
                None => None,
                Some(p) if device && p.value.len() >= 8 && p.value.len() % 8 == 0 => {
                    let v = p.value;
                    let id = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                    let attr = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
                    // Only SPIs (type 0b10) are device interrupts the testbed routes.
                    if !(32..1020).contains(&id) || (attr >> 10) & 0b11 != 0b10 {
                        return Err(ManifestError::BadValue("interrupts", u64::from(id)));
                    }
                    Some((id, attr))
                }
                Some(p) => {
                    return Err(ManifestError::BadValue("interrupts", p.value.len() as u64));
                }
            };
            let node = r.name.split('@').next().unwrap_or(r.name);
            m.regions[m.region_count] = Region {
                name: Name::new(node)
                    .ok_or(ManifestError::BadValue("region name", node.len() as u64))?,
                base,
                pages,
                attributes,
                device,
                interrupt,
            };
            m.region_count += 1;
        }
    }
    Ok(m)
}

/// The most execution contexts a manifest may declare: one per PE of the largest platform the
/// project's manifests target (TF-A's QEMU port, PLATFORM_CORE_COUNT = 32, `fvp/qemu-el3`).
/// The testbed runs one vCPU and reports the count in partition info.
pub const MAX_EXEC_CTX_COUNT: u16 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    /// `dtb` with the 4-byte property `name` (first occurrence) set to `value`.
    fn with_u32_prop(dtb: &[u8], name: &str, value: u32) -> std::vec::Vec<u8> {
        extern crate std;
        let be = |o: usize| u32::from_be_bytes(dtb[o..o + 4].try_into().unwrap()) as usize;
        let (structs, strings) = (be(8), be(12));
        let mut out = dtb.to_vec();
        let mut o = structs;
        loop {
            match be(o) {
                1 => {
                    // FDT_BEGIN_NODE: NUL-terminated name, padded to 4.
                    let len = dtb[o + 4..].iter().position(|&b| b == 0).unwrap();
                    o += 4 + (len + 1).div_ceil(4) * 4;
                }
                3 => {
                    let (len, nameoff) = (be(o + 4), be(o + 8));
                    let n = &dtb[strings + nameoff..];
                    let end = n.iter().position(|&b| b == 0).unwrap();
                    if &n[..end] == name.as_bytes() && len == 4 {
                        out[o + 12..o + 16].copy_from_slice(&value.to_be_bytes());
                        return out;
                    }
                    o += 12 + len.div_ceil(4) * 4;
                }
                2 | 4 => o += 4,
                t => panic!("{name} not found (token {t})"),
            }
        }
    }

    /// Counts the project's manifests use (1: Hafnium UP, 8: FVP, 32: TF-A's QEMU port) parse;
    /// 0 and counts past [`MAX_EXEC_CTX_COUNT`] do not.
    #[test]
    fn execution_context_counts() {
        for n in [1, 8, 32] {
            let m = parse(&with_u32_prop(GOOD, "execution-ctx-count", n)).unwrap();
            assert_eq!(m.exec_ctx_count, n as u16);
        }
        for n in [0, u32::from(MAX_EXEC_CTX_COUNT) + 1, 0xffff] {
            assert_eq!(
                parse(&with_u32_prop(GOOD, "execution-ctx-count", n)),
                Err(ManifestError::BadValue("execution-ctx-count", u64::from(n))),
                "{n}"
            );
        }
        assert!(parse(&with_u32_prop(GOOD, "execution-ctx-count", 0x1_0000)).is_err());
    }

    const GOOD: &[u8] = include_bytes!("../bringup/sp-manifest.dtb");
    const BAD_EL: &[u8] = include_bytes!("../bringup/test-bad-el.dtb");

    #[test]
    fn parses_the_bringup_manifest() {
        let m = parse(GOOD).unwrap();
        assert_eq!(
            m.uuids(),
            &[Uuid::from_cells([
                0x1234_5678,
                0x9abc_def0,
                0x1122_3344,
                0x5566_7788
            ])]
        );
        assert_eq!(m.id, Some(0x8001));
        assert_eq!(m.ffa_version, 0x10002);
        assert_eq!(m.load_address, 0x0e30_0000);
        assert_eq!(m.entrypoint_offset, 0x4000);
        assert_eq!(m.messaging_method, 0x203);
        assert_eq!(m.gp_register_num, Some(0));
        assert!(m.boot_info_manifest);
        assert_eq!(
            m.regions(),
            &[
                Region {
                    name: Name::new("heap").unwrap(),
                    base: 0x0e40_0000,
                    pages: 16,
                    attributes: 0x3,
                    device: false,
                    interrupt: None,
                },
                Region {
                    name: Name::new("flexmem-window").unwrap(),
                    base: 0x5000_0000,
                    pages: 32768,
                    attributes: 0x3,
                    device: false,
                    interrupt: None,
                },
                Region {
                    name: Name::new("uart").unwrap(),
                    base: 0x0904_0000,
                    pages: 1,
                    attributes: 0x3,
                    device: true,
                    interrupt: None,
                },
                Region {
                    name: Name::new("tzc400").unwrap(),
                    base: 0x090c_0000,
                    pages: 1,
                    attributes: 0x3,
                    device: true,
                    interrupt: None,
                },
            ]
        );
    }

    #[test]
    fn rejects_bad_manifests() {
        assert_eq!(
            parse(BAD_EL),
            Err(ManifestError::BadValue("exception-level", 1))
        );
        assert_eq!(parse(&GOOD[..40]), Err(ManifestError::NotDtb));
        assert_eq!(
            parse(b"not a dtb at all, clearly"),
            Err(ManifestError::NotDtb)
        );
    }
}
