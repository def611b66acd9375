//! What each SPMC answers where the `memory` scenario's checks meet an SPMC-specific rule:
//! the spec leaves the choice open (which error, whether an optional flag or DONATE is
//! supported, whether a borrower may retrieve twice), or the SPMC does not validate a field at
//! all. Each answer names the SPMC's source (TF-A / Hafnium v2.15.0) so a change there is found.
//! The testbed follows Hafnium (`tests/testbed/README.md`).

use crate::Spmc;
use ffa::FfaError;

/// How an SPMC treats a send the spec calls malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The send is refused with this error.
    Refused(FfaError),
    /// The send is accepted and the descriptor is valid for the SP to map.
    Accepted,
    /// The SPMC accepts the send without checking the field; the SP must not map what it is
    /// handed (it refuses the retrieve response, or the SPMC refuses the retrieve) and the
    /// owner must get the memory back.
    AcceptedUnchecked,
}

/// The answer to the malformed send `check`, whose spec answer is `spec`.
pub(crate) fn malformed(spmc: Spmc, check: &str, spec: FfaError) -> Answer {
    match (spmc, check) {
        // Hafnium reads attribute bits [15:8] through an unnamed bit-field
        // (`ffa_memory_attributes_t`, inc/vmapi/hf/ffa.h) and never checks them; the EL3 SPMC
        // checks only the NS bit (`spmc_ffa_fill_desc`). The testbed follows Hafnium.
        (_, "mal.reserved_attribute_bits") => Answer::Accepted,
        // Hafnium `constituents_get_mode`: an empty constituent has no single mapping mode,
        // DENIED (`ffa_memory_check_overlap` lets a zero size pass as "no overlap").
        (Spmc::Hafnium | Spmc::Testbed, "mal.zero_page_range") => Answer::Refused(FfaError::Denied),
        // TF-A `spmc_shmem_check_obj` only warns about a misaligned constituent address,
        // checks no page count but the total and no overlap within one descriptor
        // (`spmc_shmem_check_state_obj` compares other transactions only), and
        // `spmc_validate_mtd_start` does not look at the header's reserved bytes.
        (
            Spmc::El3,
            "mal.misaligned_range_address"
            | "mal.zero_page_range"
            | "mal.zero_ranges"
            | "mal.overlapping_ranges"
            | "mal.reserved_header_nonzero",
        ) => Answer::AcceptedUnchecked,
        _ => Answer::Refused(spec),
    }
}

/// The error for a LEND of pages already lent (spec: DENIED, the memory's state).
pub(crate) fn lend_already_lent(spmc: Spmc) -> FfaError {
    match spmc {
        // TF-A `spmc_shmem_check_state_obj`: overlap with an in-flight transaction.
        Spmc::El3 => FfaError::InvalidParameters,
        Spmc::Testbed | Spmc::Hafnium => FfaError::Denied,
    }
}

/// Whether the SPMC grants a second retrieve of a lent region by the same borrower (FF-A v1.1+
/// allows it, counting retrievals). Hafnium refuses it, DENIED (the pages are already the
/// borrower's: `ffa_retrieve_check_transition`); TF-A `spmc_ffa_mem_retrieve_req` grants it,
/// counting it in `obj->in_use`.
pub(crate) fn grants_second_retrieve(spmc: Spmc) -> bool {
    spmc == Spmc::El3
}

/// Whether the SPMC honours the "zero memory" flags of a LEND and of a RECLAIM (optional in
/// the spec). TF-A `spmc_ffa_fill_desc` accepts no flag but the transaction type and
/// `spmc_ffa_mem_reclaim` no flag at all: INVALID_PARAMETERS.
pub(crate) fn zeroes_on_request(spmc: Spmc) -> bool {
    spmc != Spmc::El3
}
