//! Signed checkpoints of the audit log in the C2SP formats, so that any witness or
//! monitor that speaks them can check the log.
//!
//! A checkpoint ([C2SP tlog-checkpoint]) commits to one tree size and root:
//!
//! ```text
//! <origin>\n
//! <tree size in decimal>\n
//! <root hash in standard, padded base64>\n
//! [<extension line>\n ...]
//! ```
//!
//! It travels as a [C2SP signed-note]: the body, a blank line, then one line per signature,
//! `— <key name> <base64(4-byte key id || signature)>\n` (an em dash U+2014 and a space).
//! For Ed25519 keys the key id is the first 4 bytes of
//! `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)` and the signature is over the
//! body bytes, final newline included. A third party configures a verifier with the key
//! string `<key name>+<key id as 8 hex digits>+<base64(0x01 || public key)>`, which
//! [`NoteSigner::verifier_key`] prints and [`NoteVerifier::from_vkey`] reads.
//!
//! ```text
//! let signer = NoteSigner::new("consentgate.example/audit", key_pair)?;
//! let note = sign(&Checkpoint::new("consentgate.example/audit", size, root)?, &signer);
//! let checkpoint = verify_note(&note, &NoteVerifier::from_vkey(&signer.verifier_key())?)?;
//! ```
//!
//! Parsing is strict: anything [`sign`] would not have produced is refused. Signatures by
//! other keys (witness cosignatures, say) are skipped, as the signed-note spec asks;
//! callers check that the checkpoint's origin is the log they expect.
//!
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//! [C2SP signed-note]: https://c2sp.org/signed-note

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA256, digest};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use super::merkle::Hash;

/// The signed-note signature type byte of Ed25519 keys.
const ED25519_TYPE: u8 = 0x01;
/// The prefix of every signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// The signed-note spec lets verifiers stop after this many signature lines.
const MAX_SIGNATURES: usize = 100;
const ED25519_SIGNATURE_LEN: usize = 64;

/// Why a checkpoint, key or note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The origin line is empty or holds whitespace, `+` or control characters.
    #[error("the checkpoint origin is not a single token")]
    InvalidOrigin,
    /// An extension line is empty or holds control characters.
    #[error("a checkpoint extension line is empty or holds control characters")]
    InvalidExtension,
    /// A key name is empty or holds whitespace, `+` or control characters.
    #[error("the key name is not a single token without '+'")]
    InvalidKeyName,
    /// A verifier key string is not `<name>+<8 hex digits>+<base64 key>`.
    #[error("the verifier key is malformed: {reason}")]
    InvalidVerifierKey {
        /// Which part is wrong.
        reason: &'static str,
    },
    /// A verifier key's id does not match its name and public key.
    #[error("the verifier key id does not match its name and public key")]
    VerifierKeyIdMismatch,
    /// The note is not a body, a blank line and newline-terminated signature lines.
    #[error("the signed note is malformed: {reason}")]
    MalformedNote {
        /// Which rule the note breaks.
        reason: &'static str,
    },
    /// A signature line is not `— <name> <base64>`.
    #[error("a signature line of the note is malformed")]
    MalformedSignatureLine,
    /// The note carries more signature lines than any verifier should read.
    #[error("the note carries more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// No signature line names the verifier's key.
    #[error("the note has no signature by key {key_name}")]
    MissingSignature {
        /// The verifier's key name.
        key_name: String,
    },
    /// A signature names the verifier's key but carries another key id.
    #[error("the signature by key {key_name} carries a different key id")]
    WrongKeyId {
        /// The verifier's key name.
        key_name: String,
    },
    /// The verifier's signature does not verify over the body.
    #[error("the signature by key {key_name} does not verify")]
    InvalidSignature {
        /// The verifier's key name.
        key_name: String,
    },
    /// The checkpoint body does not end in a newline.
    #[error("the checkpoint body does not end in a newline")]
    BodyNotNewlineTerminated,
    /// The body has fewer than the three mandatory lines.
    #[error("the checkpoint body lacks its origin, size or root line")]
    MissingLine,
    /// The size line is not a decimal number without sign or leading zeros that fits 64 bits.
    #[error("the checkpoint tree size is not canonical decimal")]
    NonCanonicalSize,
    /// The root line is not the canonical base64 of 32 bytes.
    #[error("the checkpoint root hash is not canonical base64 of 32 bytes")]
    InvalidRootHash,
}

impl CheckpointError {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidOrigin => "invalid_origin",
            Self::InvalidExtension => "invalid_extension",
            Self::InvalidKeyName => "invalid_key_name",
            Self::InvalidVerifierKey { .. } => "invalid_verifier_key",
            Self::VerifierKeyIdMismatch => "verifier_key_id_mismatch",
            Self::MalformedNote { .. } => "malformed_note",
            Self::MalformedSignatureLine => "malformed_signature_line",
            Self::TooManySignatures => "too_many_signatures",
            Self::MissingSignature { .. } => "missing_signature",
            Self::WrongKeyId { .. } => "wrong_key_id",
            Self::InvalidSignature { .. } => "invalid_signature",
            Self::BodyNotNewlineTerminated => "body_not_newline_terminated",
            Self::MissingLine => "checkpoint_missing_line",
            Self::NonCanonicalSize => "non_canonical_size",
            Self::InvalidRootHash => "invalid_root_hash",
        }
    }
}

/// A commitment to the log's first `size` entries: the statement a signed note carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log, so a signature for one log cannot be replayed for another.
    origin: String,
    /// Number of leaves committed to.
    size: u64,
    /// The Merkle tree root of those leaves.
    root: Hash,
    /// Extra lines after the root, kept in order; empty for our own checkpoints.
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint of the log named `origin` at `size` leaves with tree root `root`.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if !is_token(origin) {
            return Err(CheckpointError::InvalidOrigin);
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The same checkpoint with extension lines appended after the root line.
    pub fn with_extensions<I, L>(mut self, lines: I) -> Result<Self, CheckpointError>
    where
        I: IntoIterator<Item = L>,
        L: Into<String>,
    {
        for line in lines {
            let line = line.into();
            if line.is_empty() || line.chars().any(char::is_control) {
                return Err(CheckpointError::InvalidExtension);
            }
            self.extensions.push(line);
        }
        Ok(self)
    }

    /// The log's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of leaves committed to.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree root at that size.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The extension lines, in order.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The tlog-checkpoint body: origin, size and root lines, then extensions, each ending in `\n`.
    pub fn to_note_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses a tlog-checkpoint body, refusing anything [`Checkpoint::to_note_body`] would not produce.
    pub fn from_note_body(body: &str) -> Result<Self, CheckpointError> {
        let lines = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::BodyNotNewlineTerminated)?;
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::MissingLine);
        };
        let checkpoint = Self::new(origin, parse_size(size)?, parse_root(root)?)?;
        checkpoint.with_extensions(lines)
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::NonCanonicalSize);
    }
    line.parse().map_err(|_| CheckpointError::NonCanonicalSize)
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let bytes = STANDARD
        .decode(line)
        .map_err(|_| CheckpointError::InvalidRootHash)?;
    let root: Hash = bytes
        .try_into()
        .map_err(|_| CheckpointError::InvalidRootHash)?;
    // The decoder already refuses stray padding and trailing bits; re-encoding makes the
    // one-spelling-per-hash rule explicit.
    if STANDARD.encode(root) != line {
        return Err(CheckpointError::InvalidRootHash);
    }
    Ok(root)
}

/// The signed-note key id of an Ed25519 key: the first 4 bytes of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 2 + public_key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ED25519_TYPE);
    input.extend_from_slice(public_key);
    let hash = digest(&SHA256, &input);
    let mut id = [0u8; 4];
    id.copy_from_slice(&hash.as_ref()[..4]);
    id
}

/// A named Ed25519 key that signs notes.
#[derive(Debug)]
pub struct NoteSigner {
    name: String,
    key_id: [u8; 4],
    key_pair: Ed25519KeyPair,
}

impl NoteSigner {
    /// A signer whose signatures carry the key name `name`.
    pub fn new(name: &str, key_pair: Ed25519KeyPair) -> Result<Self, CheckpointError> {
        let public_key = ed25519_public_key(&key_pair);
        let verifier = NoteVerifier::new(name, public_key)?;
        Ok(Self {
            name: verifier.name,
            key_id: verifier.key_id,
            key_pair,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id that prefixes each signature.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The verifier matching this signer.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: ed25519_public_key(&self.key_pair),
        }
    }

    /// The verifier key string to publish for third parties.
    pub fn verifier_key(&self) -> String {
        self.verifier().to_vkey()
    }

    /// The signature line for `body`, newline included.
    fn signature_line(&self, body: &str) -> String {
        let signature = self.key_pair.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + ED25519_SIGNATURE_LEN);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(signature.as_ref());
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }
}

fn ed25519_public_key(key_pair: &Ed25519KeyPair) -> [u8; 32] {
    let mut public_key = [0u8; 32];
    // ring's Ed25519 public keys are always 32 bytes.
    public_key.copy_from_slice(key_pair.public_key().as_ref());
    public_key
}

/// A named Ed25519 public key that checks note signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    public_key: [u8; 32],
}

impl NoteVerifier {
    /// A verifier for the key named `name` with this Ed25519 public key.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, CheckpointError> {
        if !is_token(name) {
            return Err(CheckpointError::InvalidKeyName);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            public_key,
        })
    }

    /// Reads a verifier key string `<name>+<8 hex digits>+<base64(0x01 || public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        let invalid = |reason| CheckpointError::InvalidVerifierKey { reason };
        // The name cannot hold '+', but the base64 key may.
        let (name, rest) = vkey.split_once('+').ok_or(invalid("missing key id"))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(invalid("missing public key"))?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| invalid("key id is not hex"))?;
        let key = STANDARD
            .decode(key_b64)
            .map_err(|_| invalid("public key is not base64"))?;
        let (&key_type, public_key) = key.split_first().ok_or(invalid("public key is empty"))?;
        if key_type != ED25519_TYPE {
            return Err(invalid("key type is not Ed25519"));
        }
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| invalid("Ed25519 public key is not 32 bytes"))?;
        let verifier = Self::new(name, public_key)?;
        if verifier.key_id != id.to_be_bytes() {
            return Err(CheckpointError::VerifierKeyIdMismatch);
        }
        Ok(verifier)
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ED25519_TYPE);
        key.extend_from_slice(&self.public_key);
        let id = u32::from_be_bytes(self.key_id);
        format!("{}+{id:08x}+{}", self.name, STANDARD.encode(key))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }
}

/// The checkpoint as a signed note carrying one signature by `signer`.
pub fn sign(checkpoint: &Checkpoint, signer: &NoteSigner) -> String {
    let body = checkpoint.to_note_body();
    let line = signer.signature_line(&body);
    format!("{body}\n{line}")
}

/// Checks `note`'s signature by `verifier` and returns the body it vouches for, final newline included.
pub fn open_note<'n>(note: &'n str, verifier: &NoteVerifier) -> Result<&'n str, CheckpointError> {
    let malformed = |reason| CheckpointError::MalformedNote { reason };
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed("control character"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(malformed("no blank line before the signatures"))?;
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    let signatures = signatures
        .strip_suffix('\n')
        .ok_or(malformed("signatures do not end in a newline"))?;
    if signatures.is_empty() {
        return Err(malformed("no signature lines"));
    }

    let key_name = || verifier.name.clone();
    let mut verified = false;
    let mut other_key_id = false;
    for (count, line) in signatures.split('\n').enumerate() {
        if count == MAX_SIGNATURES {
            return Err(CheckpointError::TooManySignatures);
        }
        let (name, blob) = parse_signature_line(line)?;
        if name != verifier.name {
            continue;
        }
        if blob[..4] != verifier.key_id {
            other_key_id = true;
            continue;
        }
        let public_key = UnparsedPublicKey::new(&ED25519, &verifier.public_key);
        if public_key.verify(body.as_bytes(), &blob[4..]).is_err() {
            return Err(CheckpointError::InvalidSignature {
                key_name: key_name(),
            });
        }
        verified = true;
    }
    match (verified, other_key_id) {
        (true, _) => Ok(body),
        (false, true) => Err(CheckpointError::WrongKeyId {
            key_name: key_name(),
        }),
        (false, false) => Err(CheckpointError::MissingSignature {
            key_name: key_name(),
        }),
    }
}

/// Checks a signed checkpoint note and returns the checkpoint it carries.
pub fn verify_note(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::from_note_body(open_note(note, verifier)?)
}

/// Splits `— <name> <base64>` into the name and the decoded key id and signature.
fn parse_signature_line(line: &str) -> Result<(&str, Vec<u8>), CheckpointError> {
    let malformed = CheckpointError::MalformedSignatureLine;
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(malformed.clone())?;
    let (name, blob) = rest.split_once(' ').ok_or(malformed.clone())?;
    if !is_token(name) {
        return Err(malformed);
    }
    let blob = STANDARD.decode(blob).map_err(|_| malformed.clone())?;
    // A key id and at least one byte of signature.
    if blob.len() < 5 {
        return Err(malformed);
    }
    Ok((name, blob))
}

/// Key names and origins: non-empty, without whitespace, control characters or `+`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

#[cfg(test)]
mod tests;
