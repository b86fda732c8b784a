//! The tamper-evident audit log: what every decision, read, export, disclosure, grant and
//! revocation leaves behind, in a form the patient and third parties can check.
//!
//! # How the pieces fit
//!
//! ```text
//! AuditEntry ──canonical_bytes()──> SHA-256(0x00 || bytes) = leaf hash        (entry)
//!   leaf hashes ──Frontier::append──> completed perfect-subtree nodes         (merkle)
//!   stored nodes ──root(size)──> tree root of any past or present size        (merkle)
//!   (origin, size, root) ──sign──> C2SP signed-note checkpoint                (checkpoint)
//!   stored nodes ──inclusion_proof / consistency_proof──> RFC 9162 proofs     (merkle)
//! ```
//!
//! * [`entry`]: [`AuditEntry`], an IHE BALP-shaped record holding ids only, and its
//!   documented canonical bytes, so anyone can recompute a leaf hash.
//! * [`merkle`]: the RFC 9162 Merkle tree. Only perfect subtrees are stored, as nodes
//!   `(level, index)` written once each; an append completes two nodes amortised and
//!   reads nothing, because the [`Frontier`] of at most 64 peaks lives in memory. Roots
//!   and proofs read O(log n) nodes through the [`NodeStore`] trait.
//! * [`checkpoint`]: a [`Checkpoint`] (origin, size, root) as a C2SP tlog-checkpoint,
//!   signed with Ed25519 as a C2SP signed note, with the matching verifier key string.
//!
//! A verifier holding a signed checkpoint checks that an entry is in the log with
//! [`verify_inclusion`] (entry leaf hash, its sequence, the checkpoint size and root), and
//! that a later checkpoint extends an earlier one with [`verify_consistency`]. A root commits
//! to a tree only together with its size (a proof for a smaller tree can verify at a larger
//! size whose path has the same shape), so verify against the size and root of one signed
//! checkpoint, never against a root from elsewhere.
//!
//! # What the caller does
//!
//! The modules above are pure; [`log`] owns the I/O (the group-committing writer and the
//! checkpoint signer). Per group commit it clones the
//! frontier, sets each entry's `sequence` to the frontier size, appends each entry's leaf
//! hash, writes the entries and every returned [`TreeNode`] in one transaction, and keeps
//! the new frontier only after the commit. On start-up it rebuilds the frontier with
//! [`Frontier::from_store`]. Checkpoints are signed over [`root`] (or
//! [`Frontier::root`]) at a size that is durable.

pub mod checkpoint;
pub mod entry;
pub mod log;
pub mod merkle;
pub mod stored;
pub mod verify;

pub use checkpoint::{
    Checkpoint, CheckpointError, NoteSigner, NoteVerifier, open_note, sign, verify_note,
};
pub use entry::{
    AuditAction, AuditEntry, AuditOutcome, ENTRY_FORMAT_VERSION, EntryError, OPERATOR_CLIENT,
    PATIENT_CLIENT, organisation_token,
};
pub use merkle::{
    AppendError, Frontier, Hash, MemoryStore, NodeStore, TreeError, TreeNode, consistency_proof,
    empty_root, inclusion_proof, leaf_hash, node_hash, nodes_completed_by_append, root,
    verify_consistency, verify_inclusion,
};
