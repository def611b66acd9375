//! Memory-command messages: the `MemChecksum` checksum, the `MemFill` pattern, region info and
//! statistics, and why the SP refuses a region.

/// The checksum `MemChecksum` replies with: 32-bit FNV-1a over the bytes, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum(u32);

impl Checksum {
    pub const fn new() -> Self {
        Checksum(0x811c_9dc5)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }

    pub const fn value(self) -> u32 {
        self.0
    }

    pub fn of(bytes: &[u8]) -> u32 {
        let mut c = Self::new();
        c.update(bytes);
        c.value()
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

/// The byte `MemFill` writes at region offset `offset`: the pattern's little-endian bytes in
/// turn, plus the word index, so a byte written at the wrong place shows.
pub const fn pattern_byte(pattern: u32, offset: u32) -> u8 {
    pattern.to_le_bytes()[(offset % 4) as usize].wrapping_add((offset / 4) as u8)
}

/// Flag bits of [`RegionInfo::flags`].
pub mod region_flags {
    /// The SP maps the region non-secure (the retrieve response's NS attribute).
    pub const NS: u32 = 1 << 0;
    /// The SP may write the region.
    pub const WRITABLE: u32 = 1 << 1;
    /// Bits [3:2]: the transaction type (1 share, 2 lend, 3 donate).
    pub const TYPE_SHIFT: u32 = 2;
    pub const TYPE_MASK: u32 = 3 << TYPE_SHIFT;
}

/// The `MemRetrieve` reply: the SP's name for the region and what it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// The SP's region id (never 0), used by the other `Mem*` commands.
    pub region: u32,
    pub pages: u32,
    pub ranges: u32,
    /// [`region_flags`] bits.
    pub flags: u32,
}

/// The `MemStats` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStats {
    /// Regions retrieved and not yet released.
    pub live_regions: u32,
    /// Pages the SP's stage-1 maps beyond its own memory, counted by walking the page table
    /// (not from the region table, so the two can be compared).
    pub mapped_pages: u32,
    /// Successful retrieves and relinquishes since start-up (wrapping).
    pub retrieves: u32,
    pub relinquishes: u32,
}

/// Why the SP refused a region the partition manager handed it (`RegionRejected` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RejectReason {
    /// The retrieve response does not parse or does not describe the requested transaction.
    BadDescriptor = 1,
    /// The memory type or cacheability is one the SP does not map (device, non-cacheable).
    UnsupportedAttributes = 2,
    /// A range overlaps the SP's own memory or a region it already holds.
    Overlap = 3,
    /// More pages or ranges than the SP accepts in one region.
    TooLarge = 4,
    /// The page-table layer refused to map a range.
    MapFailed = 5,
    /// The data access granted is not read or read-write.
    NoAccess = 6,
}

impl RejectReason {
    pub fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::BadDescriptor,
            2 => Self::UnsupportedAttributes,
            3 => Self::Overlap,
            4 => Self::TooLarge,
            5 => Self::MapFailed,
            6 => Self::NoAccess,
            _ => return None,
        })
    }
}
