//! FF-A endpoint library (placeholder; filled by the foundation issue).
#![no_std]
