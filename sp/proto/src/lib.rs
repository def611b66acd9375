//! The FlexServe service protocol (placeholder; filled by the foundation issue).
#![no_std]
