//! The Merkle tree as stored: the [`NodeStore`] the tree algorithms read through, over the
//! node rows `store::audit` keeps (bytes only: `store/` knows nothing of the tree).

use std::cell::RefCell;

use super::{Hash, NodeStore, TreeNode};
use crate::error::DomainError;
use crate::store::audit::{self as rows, NodeRow};
use crate::store::{DbConn, StoreError};

/// A [`NodeStore`] reading tree nodes through a connection.
pub struct DbNodes<'c>(pub RefCell<&'c mut DbConn>);

impl NodeStore for DbNodes<'_> {
    type Error = StoreError;

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        let mut conn = self.0.borrow_mut();
        let bytes = rows::node(&mut conn, level, index)?;
        Ok(bytes.and_then(|b| <Hash>::try_from(b.as_slice()).ok()))
    }
}

/// The rows of completed tree nodes, for [`rows::append`].
pub fn node_rows(nodes: &[TreeNode]) -> Vec<NodeRow> {
    nodes
        .iter()
        .map(|n| NodeRow {
            level: n.level,
            index: n.index,
            hash: n.hash.to_vec(),
        })
        .collect()
}

fn bad_proof_request(message: &str) -> DomainError {
    DomainError::invalid("invalid_proof_request", message)
}

/// The RFC 9162 inclusion proof of leaf `index` in the tree of `tree_size` leaves, from the
/// stored tree; a size beyond the log or an index beyond the size is a 400.
pub fn inclusion(conn: &mut DbConn, index: u64, tree_size: u64) -> Result<Vec<Hash>, DomainError> {
    if tree_size > rows::size(conn)? {
        return Err(bad_proof_request("tree_size is larger than the log"));
    }
    if index >= tree_size {
        return Err(bad_proof_request("index must be below tree_size"));
    }
    let nodes = DbNodes(RefCell::new(conn));
    super::inclusion_proof(index, tree_size, &nodes).map_err(DomainError::internal)
}

/// The RFC 9162 consistency proof between the trees of `from` and `to` leaves.
pub fn consistency(conn: &mut DbConn, from: u64, to: u64) -> Result<Vec<Hash>, DomainError> {
    if to > rows::size(conn)? {
        return Err(bad_proof_request("to is larger than the log"));
    }
    if from == 0 || from > to {
        return Err(bad_proof_request("need 0 < from <= to"));
    }
    let nodes = DbNodes(RefCell::new(conn));
    super::consistency_proof(from, to, &nodes).map_err(DomainError::internal)
}
