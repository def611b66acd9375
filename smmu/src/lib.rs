//! SMMUv3 secure-side driver, and the Rockchip IOMMU v2 for the RK3588 NPU.
//!
//! Will contain: the secure register page (S_CR0, S_STRTAB_BASE, S_CMDQ, ...), linear stream
//! table with secure STEs (abort / stage-2), the command queue (CFGI_STE, CMD_SYNC), and the
//! Rockchip IOMMU two-level page tables used to make the NPU's bus master secure during a
//! Flex-NPU switch (DESIGN.md sec. 7).
#![no_std]
