//! Partition information descriptors (FF-A v1.1+ Table 6.1, 24 bytes) and the
//! FFA_PARTITION_INFO_GET / _GET_REGS reply formats.
//!
//! PARTITION_INFO_GET (flags bit 0 clear) writes `count` descriptors into the caller's RX
//! buffer and replies FFA_SUCCESS_32 with w2 = count, w3 = descriptor size (24). With flag
//! bit 0 set it writes nothing and w3 is 0.
//!
//! PARTITION_INFO_GET_REGS replies FFA_SUCCESS_64 with x2 = last index \[15:0\] | current
//! index \[31:16\] | UUID info tag \[47:32\] | descriptor size \[63:48\], then up to five
//! descriptors in x3-x17, three registers each: id \[15:0\] | exec contexts \[31:16\] |
//! properties \[63:32\], UUID lo, UUID hi (Hafnium `ffa_partition_info_regs_get_part_info`).
//!
//! Hafnium v2.15 answers every v1.1+ caller with the FF-A v1.3 ALP2 descriptor
//! ([`PartitionInfo::SIZE_V1_3`], 48 bytes: the 24 above, image UUID, the partition's FF-A
//! version, reserved), in the RX buffer and in GET_REGS (six registers each, two per call).
//! Readers take the size from w3 / x2 \[63:48\] and read the first 24 bytes of each entry.

use crate::{PartitionId, SuccessArgs, Uuid};

/// Partition properties (w/ bit meanings from FF-A v1.2 Table 6.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PartitionProperties(pub u32);

impl PartitionProperties {
    pub const DIRECT_REQ_RECV: u32 = 1 << 0;
    pub const DIRECT_REQ_SEND: u32 = 1 << 1;
    pub const INDIRECT_MSG: u32 = 1 << 2;
    pub const NOTIFICATIONS: u32 = 1 << 3;
    /// \[5:4\] partition ID type: 0 = PE endpoint, 1 = SEPID independent, 2 = SEPID
    /// dependent, 3 = auxiliary.
    pub const ID_TYPE_SHIFT: u32 = 4;
    pub const VM_CREATED_MSG: u32 = 1 << 6;
    pub const VM_DESTROYED_MSG: u32 = 1 << 7;
    /// Execution state AArch64.
    pub const AARCH64: u32 = 1 << 8;
    pub const DIRECT_REQ2_RECV: u32 = 1 << 9;
    pub const DIRECT_REQ2_SEND: u32 = 1 << 10;

    pub const fn contains(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

/// One partition information descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: PartitionId,
    pub exec_ctx_count: u16,
    pub properties: PartitionProperties,
    pub uuid: Uuid,
}

/// The buffer is shorter than the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    pub needed: usize,
    pub available: usize,
}

impl PartitionInfo {
    /// Size of the v1.1+ descriptor.
    pub const SIZE: usize = 24;
    /// Size of the FF-A v1.3 ALP2 descriptor Hafnium v2.15 returns to v1.1+ callers.
    pub const SIZE_V1_3: usize = 48;

    /// The 48-byte form: these 24 bytes, `image_uuid`, the partition's FF-A version, reserved.
    pub fn to_bytes_v1_3(&self, image_uuid: Uuid, ffa_version: u32) -> [u8; Self::SIZE_V1_3] {
        let mut b = [0u8; Self::SIZE_V1_3];
        b[..Self::SIZE].copy_from_slice(&self.to_bytes());
        b[24..40].copy_from_slice(&image_uuid.0);
        b[40..44].copy_from_slice(&ffa_version.to_le_bytes());
        b
    }

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.exec_ctx_count.to_le_bytes());
        b[4..8].copy_from_slice(&self.properties.0.to_le_bytes());
        b[8..24].copy_from_slice(&self.uuid.0);
        b
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[8..24]);
        Self {
            id: u16::from_le_bytes([b[0], b[1]]),
            exec_ctx_count: u16::from_le_bytes([b[2], b[3]]),
            properties: PartitionProperties(u32::from_le_bytes([b[4], b[5], b[6], b[7]])),
            uuid: Uuid(uuid),
        }
    }

    /// Write `infos` back to back into `buf` (the caller's RX buffer); returns bytes written.
    pub fn pack_all(infos: &[PartitionInfo], buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let needed = infos.len().saturating_mul(Self::SIZE);
        let available = buf.len();
        let dst = buf
            .get_mut(..needed)
            .ok_or(BufferTooSmall { needed, available })?;
        for (d, info) in dst.chunks_exact_mut(Self::SIZE).zip(infos) {
            d.copy_from_slice(&info.to_bytes());
        }
        Ok(needed)
    }

    /// Iterate over `count` descriptors of `desc_size` bytes (>= 24; larger sizes from a
    /// newer SPMC are read as their first 24 bytes) in `buf`. Bounds are checked up front.
    pub fn iter(
        buf: &[u8],
        count: u32,
        desc_size: u32,
    ) -> Result<impl Iterator<Item = PartitionInfo> + '_, PartitionInfoError> {
        let size = desc_size as usize;
        if size < Self::SIZE {
            return Err(PartitionInfoError::DescriptorTooSmall(desc_size));
        }
        let needed = (count as usize)
            .checked_mul(size)
            .ok_or(PartitionInfoError::TooLarge)?;
        let data = buf
            .get(..needed)
            .ok_or(PartitionInfoError::BufferTooSmall(BufferTooSmall {
                needed,
                available: buf.len(),
            }))?;
        Ok(data.chunks_exact(size).filter_map(|c| {
            c.first_chunk::<{ Self::SIZE }>()
                .map(PartitionInfo::from_bytes)
        }))
    }

    /// The three-register form used by PARTITION_INFO_GET_REGS.
    pub fn to_regs(&self) -> [u64; 3] {
        let (lo, hi) = self.uuid.to_u64_pair();
        [
            u64::from(self.id)
                | u64::from(self.exec_ctx_count) << 16
                | u64::from(self.properties.0) << 32,
            lo,
            hi,
        ]
    }

    pub fn from_regs(r: [u64; 3]) -> Self {
        Self {
            id: r[0] as u16,
            exec_ctx_count: (r[0] >> 16) as u16,
            properties: PartitionProperties((r[0] >> 32) as u32),
            uuid: Uuid::from_u64_pair(r[1], r[2]),
        }
    }
}

/// A malformed partition-info reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionInfoError {
    /// Descriptor size below 24 bytes.
    DescriptorTooSmall(u32),
    /// count x size overflows.
    TooLarge,
    BufferTooSmall(BufferTooSmall),
    /// GET_REGS: current index < start index, or more than 5 entries, or last < current.
    BadIndices {
        start: u16,
        current: u16,
        last: u16,
    },
}

/// The FFA_SUCCESS_64 payload of FFA_PARTITION_INFO_GET_REGS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionInfoRegs {
    /// Index of the last descriptor the SPMC has (count - 1).
    pub last_index: u16,
    /// Index of the last descriptor in this reply.
    pub current_index: u16,
    pub tag: u16,
    pub desc_size: u16,
    /// Number of valid entries in `entries` (0..=5; 0..=2 for 48-byte descriptors).
    pub count: u8,
    pub entries: [PartitionInfo; Self::MAX_ENTRIES],
    /// Each entry's FF-A version (48-byte descriptors only; the image UUID is not kept).
    pub versions: [u32; Self::MAX_ENTRIES],
}

impl PartitionInfoRegs {
    pub const MAX_ENTRIES: usize = 5;
    /// x3-x17: the registers descriptors may use.
    const REGS: usize = 15;

    /// Registers per descriptor of `desc_size` bytes (at least the three of a 24-byte one).
    fn stride(desc_size: u16) -> usize {
        usize::from(desc_size).div_ceil(8).max(3)
    }

    /// Hafnium v2.15's reply: entries `start_index..` of `all` (at most two) as 48-byte
    /// descriptors with image UUID nil and FF-A version `versions[i]` for `all[i]`; `None` as
    /// [`Self::for_range`], or if `versions` is shorter than `all`.
    pub fn for_range_v1_3(
        all: &[PartitionInfo],
        versions: &[u32],
        start_index: u16,
        tag: u16,
    ) -> Option<Self> {
        let mut r = Self::for_range(all, start_index, tag)?;
        let start = usize::from(start_index);
        let n = usize::from(r.count).min(Self::REGS / 6);
        r.count = n as u8;
        r.current_index = (start + n - 1) as u16;
        r.desc_size = PartitionInfo::SIZE_V1_3 as u16;
        r.versions[..n].copy_from_slice(versions.get(start..start + n)?);
        r.entries[n..].fill(PartitionInfo::default());
        Some(r)
    }

    /// Build a reply for entries `start_index..` of `all` (at most five), or `None` if
    /// `start_index` is out of range or `all` is empty or longer than 65536 entries.
    pub fn for_range(all: &[PartitionInfo], start_index: u16, tag: u16) -> Option<Self> {
        let start = usize::from(start_index);
        if start >= all.len() || all.len() > usize::from(u16::MAX) + 1 {
            return None;
        }
        let end = all.len().min(start + Self::MAX_ENTRIES);
        let mut entries = [PartitionInfo::default(); Self::MAX_ENTRIES];
        entries[..end - start].copy_from_slice(&all[start..end]);
        Some(Self {
            last_index: (all.len() - 1) as u16,
            current_index: (end - 1) as u16,
            tag,
            desc_size: PartitionInfo::SIZE as u16,
            count: (end - start) as u8,
            entries,
            versions: [0; Self::MAX_ENTRIES],
        })
    }

    /// The valid entries.
    pub fn entries(&self) -> &[PartitionInfo] {
        &self.entries[..usize::from(self.count).min(Self::MAX_ENTRIES)]
    }

    pub fn to_success_args(&self) -> SuccessArgs {
        let mut a = [0u64; 16];
        a[0] = u64::from(self.last_index)
            | u64::from(self.current_index) << 16
            | u64::from(self.tag) << 32
            | u64::from(self.desc_size) << 48;
        let stride = Self::stride(self.desc_size);
        for (i, e) in self.entries().iter().enumerate() {
            let at = 1 + stride * i;
            if at + stride > a.len() {
                break;
            }
            a[at..at + 3].copy_from_slice(&e.to_regs());
            if stride >= 6 {
                // Image UUID (x+3, x+4) nil; the FF-A version in x+5.
                a[at + 5] = u64::from(self.versions[i]);
            }
        }
        SuccessArgs::Args64(a)
    }

    /// Decode the reply to a request with `start_index`.
    pub fn from_success_args(
        args: &SuccessArgs,
        start_index: u16,
    ) -> Result<Self, PartitionInfoError> {
        let x2 = args.get(0);
        let last = x2 as u16;
        let current = (x2 >> 16) as u16;
        let bad = PartitionInfoError::BadIndices {
            start: start_index,
            current,
            last,
        };
        if current < start_index || last < current {
            return Err(bad);
        }
        let n = usize::from(current - start_index) + 1;
        let desc_size = (x2 >> 48) as u16;
        if usize::from(desc_size) < PartitionInfo::SIZE {
            return Err(PartitionInfoError::DescriptorTooSmall(desc_size.into()));
        }
        // Entries are `stride` registers apart (six for Hafnium's 48-byte descriptors).
        let stride = Self::stride(desc_size);
        if n > Self::MAX_ENTRIES || n * stride > Self::REGS {
            return Err(bad);
        }
        let mut entries = [PartitionInfo::default(); Self::MAX_ENTRIES];
        let mut versions = [0u32; Self::MAX_ENTRIES];
        for i in 0..n {
            let at = 1 + stride * i;
            entries[i] =
                PartitionInfo::from_regs([args.get(at), args.get(at + 1), args.get(at + 2)]);
            if usize::from(desc_size) >= PartitionInfo::SIZE_V1_3 {
                versions[i] = args.get(at + 5) as u32;
            }
        }
        Ok(Self {
            last_index: last,
            current_index: current,
            tag: (x2 >> 32) as u16,
            desc_size,
            count: n as u8,
            entries,
            versions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(i: u16) -> PartitionInfo {
        PartitionInfo {
            id: 0x8001 + i,
            exec_ctx_count: 1 + i,
            properties: PartitionProperties(
                PartitionProperties::DIRECT_REQ_RECV
                    | PartitionProperties::AARCH64
                    | PartitionProperties::DIRECT_REQ2_RECV,
            ),
            uuid: Uuid::from_cells([
                0x12345678,
                0x9abcdef0,
                0x11223344,
                0x55667788 + u32::from(i),
            ]),
        }
    }

    #[test]
    fn descriptor_layout() {
        let b = info(0).to_bytes();
        assert_eq!(&b[0..8], &[0x01, 0x80, 0x01, 0x00, 0x01, 0x03, 0x00, 0x00]);
        assert_eq!(&b[8..12], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(PartitionInfo::from_bytes(&b), info(0));
    }

    #[test]
    fn pack_and_iterate() {
        let all = [info(0), info(1), info(2)];
        let mut buf = [0u8; 100];
        assert_eq!(PartitionInfo::pack_all(&all, &mut buf), Ok(72));
        let got: std::vec::Vec<_> = PartitionInfo::iter(&buf, 3, 24).unwrap().collect();
        assert_eq!(got, all);
        assert!(PartitionInfo::pack_all(&all, &mut buf[..71]).is_err());
        assert!(PartitionInfo::iter(&buf, 5, 24).is_err());
        assert_eq!(
            PartitionInfo::iter(&buf, 1, 23).err(),
            Some(PartitionInfoError::DescriptorTooSmall(23))
        );
        assert_eq!(
            PartitionInfo::iter(&buf, u32::MAX, u32::MAX).err(),
            Some(PartitionInfoError::BufferTooSmall(BufferTooSmall {
                needed: u32::MAX as usize * u32::MAX as usize,
                available: 100
            }))
        );
        // A larger (future) descriptor size: read the first 24 bytes of each.
        assert_eq!(
            PartitionInfo::iter(&buf, 2, 32).unwrap().next(),
            Some(info(0))
        );
    }

    #[test]
    fn regs_reply_round_trip_and_paging() {
        let all: [PartitionInfo; 7] = core::array::from_fn(|i| info(i as u16));
        let first = PartitionInfoRegs::for_range(&all, 0, 9).unwrap();
        assert_eq!(
            (first.last_index, first.current_index, first.count),
            (6, 4, 5)
        );
        let back = PartitionInfoRegs::from_success_args(&first.to_success_args(), 0).unwrap();
        assert_eq!(back, first);
        let second = PartitionInfoRegs::for_range(&all, 5, 9).unwrap();
        assert_eq!(second.entries(), &all[5..]);
        let back = PartitionInfoRegs::from_success_args(&second.to_success_args(), 5).unwrap();
        assert_eq!(back.entries(), &all[5..]);
        assert!(PartitionInfoRegs::for_range(&all, 7, 0).is_none());
        assert!(PartitionInfoRegs::for_range(&[], 0, 0).is_none());
        // Hafnium's x2 layout: last [15:0], current [31:16], tag [47:32], size [63:48].
        assert_eq!(
            first.to_success_args().get(0),
            6 | 4 << 16 | 9 << 32 | 24 << 48
        );
    }

    /// Hafnium v2.15: 48-byte descriptors, six registers each, two per call; a v1.2 reader
    /// that assumed three registers would take the image UUID for the next entry.
    #[test]
    fn regs_reply_with_hafnium_48_byte_descriptors() {
        let all: [PartitionInfo; 3] = core::array::from_fn(|i| info(i as u16));
        let versions = [0x10002, 0x10001, 0x10003];
        let first = PartitionInfoRegs::for_range_v1_3(&all, &versions, 0, 0).unwrap();
        assert_eq!(
            (first.current_index, first.count, first.desc_size),
            (1, 2, 48)
        );
        let args = first.to_success_args();
        assert_eq!(args.get(0) >> 48, 48);
        assert_eq!([args.get(4), args.get(5)], [0, 0], "image UUID nil");
        assert_eq!(args.get(6), 0x10002);
        assert_eq!(
            args.get(7),
            all[1].to_regs()[0],
            "second entry six registers on"
        );
        let back = PartitionInfoRegs::from_success_args(&args, 0).unwrap();
        assert_eq!(back.entries(), &all[..2]);
        assert_eq!(back.versions[..2], [0x10002, 0x10001]);
        let rest = PartitionInfoRegs::for_range_v1_3(&all, &versions, 2, 0).unwrap();
        let back = PartitionInfoRegs::from_success_args(&rest.to_success_args(), 2).unwrap();
        assert_eq!((back.entries(), back.versions[0]), (&all[2..], 0x10003));
        // Three 48-byte entries do not fit x3-x17.
        let x2 = 2 | 2 << 16 | 48 << 48;
        let three = SuccessArgs::Args64(core::array::from_fn(|i| if i == 0 { x2 } else { 0 }));
        assert!(PartitionInfoRegs::from_success_args(&three, 0).is_err());
        assert!(PartitionInfoRegs::for_range_v1_3(&all, &versions[..1], 0, 0).is_none());
        // The RX-buffer form: 24 bytes as before, then image UUID and version.
        let b = all[0].to_bytes_v1_3(Uuid::NIL, 0x10002);
        assert_eq!(&b[..24], &all[0].to_bytes());
        assert_eq!(&b[40..44], &0x10002u32.to_le_bytes());
        let got: std::vec::Vec<_> = PartitionInfo::iter(&b, 1, 48).unwrap().collect();
        assert_eq!(got, [all[0]]);
    }

    #[test]
    fn regs_reply_rejects_bad_indices() {
        let mk = |x2: u64| {
            SuccessArgs::Args64({
                let mut a = [0; 16];
                a[0] = x2;
                a
            })
        };
        let size = 24u64 << 48;
        // current < start
        assert!(PartitionInfoRegs::from_success_args(&mk(size | 3 | 1 << 16), 2).is_err());
        // last < current
        assert!(PartitionInfoRegs::from_success_args(&mk(size | 1 | 2 << 16), 0).is_err());
        // six entries
        assert!(PartitionInfoRegs::from_success_args(&mk(size | 9 | 5 << 16), 0).is_err());
        // descriptor size too small
        assert!(PartitionInfoRegs::from_success_args(&mk(16 << 48), 0).is_err());
    }
}
