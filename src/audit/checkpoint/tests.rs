use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::Ed25519KeyPair;

use super::super::merkle::empty_root;
use super::*;

// The key and note of golang.org/x/mod/sumdb/note's tests, which every signed-note
// implementation reproduces byte for byte.
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY_MATERIAL: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

const ORIGIN: &str = "consentgate.example/audit";

fn key_pair(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

fn signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::new(name, key_pair(seed)).unwrap()
}

fn checkpoint() -> Checkpoint {
    Checkpoint::new(ORIGIN, 7, [0xab; 32]).unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, CheckpointError>) -> &'static str {
    result.unwrap_err().code()
}

/// What a damaged verifier key may be refused as: a bad key or a bad name, or a key id that
/// no longer matches them.
const VKEY_REFUSALS: [&str; 3] = [
    "invalid_verifier_key",
    "invalid_key_name",
    "verifier_key_id_mismatch",
];

#[test]
fn go_reference_key_and_note() {
    let verifier = NoteVerifier::from_vkey(GO_VKEY).unwrap();
    assert_eq!(verifier.name(), "PeterNeumann");
    assert_eq!(verifier.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(verifier.to_vkey(), GO_VKEY);

    let material = STANDARD.decode(GO_SKEY_MATERIAL).unwrap();
    assert_eq!(material[0], ED25519_TYPE);
    let key_pair = Ed25519KeyPair::from_seed_unchecked(&material[1..]).unwrap();
    let signer = NoteSigner::new("PeterNeumann", key_pair).unwrap();
    assert_eq!(signer.verifier_key(), GO_VKEY);
    assert_eq!(signer.signature_line(GO_TEXT), GO_SIGNATURE);

    let note = format!("{GO_TEXT}\n{GO_SIGNATURE}");
    assert_eq!(open_note(&note, &verifier).unwrap(), GO_TEXT);
    let forged = note.replace("cryptography", "cryptographY");
    assert_eq!(code(open_note(&forged, &verifier)), "invalid_signature");
}

#[test]
fn signed_checkpoints_round_trip() {
    let signer = signer(ORIGIN, 1);
    let verifier = NoteVerifier::from_vkey(&signer.verifier_key()).unwrap();
    let checkpoints = [
        checkpoint(),
        Checkpoint::new(ORIGIN, 0, empty_root()).unwrap(),
        Checkpoint::new(ORIGIN, u64::MAX, [0xff; 32]).unwrap(),
        checkpoint()
            .with_extensions(["witnessed-by example", "x"])
            .unwrap(),
    ];
    for checkpoint in checkpoints {
        let note = sign(&checkpoint, &signer);
        assert_eq!(verify_note(&note, &verifier).unwrap(), checkpoint);
        assert_eq!(
            Checkpoint::from_note_body(&checkpoint.to_note_body()).unwrap(),
            checkpoint
        );
    }
}

#[test]
fn note_layout_is_the_c2sp_one() {
    let signer = signer("log-key", 2);
    let note = sign(
        &Checkpoint::new("example.org/log", 12, empty_root()).unwrap(),
        &signer,
    );
    let body = "example.org/log\n12\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
    let line = note.strip_prefix(body).unwrap().strip_prefix('\n').unwrap();
    let blob = line
        .strip_prefix("\u{2014} log-key ")
        .unwrap()
        .strip_suffix('\n')
        .unwrap();
    let blob = STANDARD.decode(blob).unwrap();
    assert_eq!(blob.len(), 4 + 64);
    assert_eq!(blob[..4], signer.key_id());
    assert_eq!(
        signer.key_id(),
        key_id("log-key", &signer.verifier().public_key)
    );
    let vkey = signer.verifier_key();
    let id = format!("{:08x}", u32::from_be_bytes(signer.key_id()));
    let key = vkey.strip_prefix(&format!("log-key+{id}+")).unwrap();
    assert_eq!(
        STANDARD.decode(key).unwrap()[..],
        [&[1u8][..], &signer.verifier().public_key].concat()
    );
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let root = STANDARD.encode([0xab; 32]);
    let short_root = STANDARD.encode([0xab; 31]);
    let long_root = STANDARD.encode([0xab; 33]);
    let unpadded = root.trim_end_matches('=').to_owned();
    // Same bytes but a non-zero trailing bit before the padding.
    let loose_bits = format!("{}t=", &root[..42]);
    assert_ne!(loose_bits, root);
    let url_safe = STANDARD
        .encode([0xfb; 32])
        .replace('+', "-")
        .replace('/', "_");
    let cases: Vec<(String, Result<u64, &str>)> = vec![
        (format!("log\n7\n{root}\n"), Ok(7)),
        (format!("log\n0\n{root}\n"), Ok(0)),
        (format!("log\n7\n{root}\next\n"), Ok(7)),
        (format!("log\n18446744073709551615\n{root}\n"), Ok(u64::MAX)),
        (
            format!("log\n7\n{root}"),
            Err("body_not_newline_terminated"),
        ),
        (String::new(), Err("body_not_newline_terminated")),
        ("log\n7\n".to_owned(), Err("checkpoint_missing_line")),
        (format!("log\n07\n{root}\n"), Err("non_canonical_size")),
        (format!("log\n00\n{root}\n"), Err("non_canonical_size")),
        (format!("log\n+7\n{root}\n"), Err("non_canonical_size")),
        (format!("log\n-7\n{root}\n"), Err("non_canonical_size")),
        (format!("log\n 7\n{root}\n"), Err("non_canonical_size")),
        (format!("log\n7.0\n{root}\n"), Err("non_canonical_size")),
        (format!("log\n\n{root}\n"), Err("non_canonical_size")),
        (
            format!("log\n18446744073709551616\n{root}\n"),
            Err("non_canonical_size"),
        ),
        (format!("log\n7\n{short_root}\n"), Err("invalid_root_hash")),
        (format!("log\n7\n{long_root}\n"), Err("invalid_root_hash")),
        (format!("log\n7\n{unpadded}\n"), Err("invalid_root_hash")),
        (format!("log\n7\n{loose_bits}\n"), Err("invalid_root_hash")),
        (format!("log\n7\n{url_safe}\n"), Err("invalid_root_hash")),
        (format!("log\n7\n {root}\n"), Err("invalid_root_hash")),
        (format!("\n7\n{root}\n"), Err("invalid_origin")),
        (format!("my log\n7\n{root}\n"), Err("invalid_origin")),
        (format!("a+b\n7\n{root}\n"), Err("invalid_origin")),
        (format!("log\r\n7\n{root}\n"), Err("invalid_origin")),
        (format!("log\n7\n{root}\n\next\n"), Err("invalid_extension")),
        (
            format!("log\n7\n{root}\next\u{7}\n"),
            Err("invalid_extension"),
        ),
    ];
    for (body, want) in cases {
        let got = Checkpoint::from_note_body(&body)
            .map(|c| c.size())
            .map_err(|e| e.code());
        assert_eq!(got, want, "{body:?}");
    }
}

#[test]
fn checkpoints_are_built_only_from_single_line_tokens() {
    let origins = [
        ("log", true),
        ("consentgate.example/audit", true),
        ("", false),
        ("two words", false),
        ("tab\there", false),
        ("a+b", false),
        ("line\nbreak", false),
        ("nbsp\u{a0}", false),
    ];
    for (origin, ok) in origins {
        let want = |code| if ok { Ok(()) } else { Err(code) };
        assert_eq!(
            Checkpoint::new(origin, 1, [0; 32])
                .map(drop)
                .map_err(|e| e.code()),
            want("invalid_origin"),
            "{origin:?}"
        );
        assert_eq!(
            NoteSigner::new(origin, key_pair(1))
                .map(drop)
                .map_err(|e| e.code()),
            want("invalid_key_name"),
            "{origin:?}"
        );
    }
    let extensions = [
        ("free text is fine", true),
        ("", false),
        ("two\nlines", false),
    ];
    for (line, ok) in extensions {
        let want = if ok { Ok(()) } else { Err("invalid_extension") };
        assert_eq!(
            checkpoint()
                .with_extensions([line])
                .map(drop)
                .map_err(|e| e.code()),
            want,
            "{line:?}"
        );
    }
}

#[test]
fn notes_are_verified_strictly() {
    let signer = signer(ORIGIN, 1);
    let verifier = signer.verifier();
    let note = sign(&checkpoint(), &signer);
    let body = checkpoint().to_note_body();
    let own_line = signer.signature_line(&body);
    let witness_line = self::signer("witness.example", 3).signature_line(&body);
    let same_name_other_key = self::signer(ORIGIN, 4).signature_line(&body);
    let mut flipped_blob = STANDARD
        .decode(own_line.rsplit_once(' ').unwrap().1.trim_end())
        .unwrap();
    flipped_blob[10] ^= 1;
    let flipped_line = format!("\u{2014} {ORIGIN} {}\n", STANDARD.encode(&flipped_blob));
    let short_blob = format!(
        "\u{2014} {ORIGIN} {}\n",
        STANDARD.encode(&flipped_blob[..40])
    );
    let many = format!("{body}\n{}{own_line}", witness_line.repeat(100));

    let cases: Vec<(String, Result<(), &str>)> = vec![
        (note.clone(), Ok(())),
        (format!("{body}\n{witness_line}{own_line}"), Ok(())),
        (format!("{body}\n{own_line}{witness_line}"), Ok(())),
        (note.trim_end().to_owned(), Err("malformed_note")),
        (body.clone(), Err("malformed_note")),
        (format!("{body}\n"), Err("malformed_note")),
        (
            body.trim_end().to_owned() + "\n" + &own_line,
            Err("malformed_note"),
        ),
        (note.replace('\n', "\r\n"), Err("malformed_note")),
        (format!("{body}\n{witness_line}"), Err("missing_signature")),
        (
            format!("{body}\n{same_name_other_key}"),
            Err("wrong_key_id"),
        ),
        (format!("{body}\n{flipped_line}"), Err("invalid_signature")),
        (format!("{body}\n{short_blob}"), Err("invalid_signature")),
        (note.replace("\n7\n", "\n8\n"), Err("invalid_signature")),
        (
            format!("{body}\n{witness_line}{flipped_line}{own_line}"),
            Err("invalid_signature"),
        ),
        (
            note.replace('\u{2014}', "-"),
            Err("malformed_signature_line"),
        ),
        (
            note.replace("\u{2014} ", "\u{2014}  "),
            Err("malformed_signature_line"),
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN} AAAA\n"),
            Err("malformed_signature_line"),
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN} not-base64\n"),
            Err("malformed_signature_line"),
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN}\n"),
            Err("malformed_signature_line"),
        ),
        (many, Err("too_many_signatures")),
    ];
    for (note, want) in cases {
        let got = verify_note(&note, &verifier)
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(got, want, "{note:?}");
    }
}

#[test]
fn verifier_keys_are_parsed_strictly() {
    let key_b64 = GO_VKEY.rsplit_once('+').unwrap().1;
    let cases = [
        ("PeterNeumann", "invalid_verifier_key"),
        ("PeterNeumann+c74f20a3", "invalid_verifier_key"),
        (
            &format!("PeterNeumann+c74f20a+{key_b64}"),
            "invalid_verifier_key",
        ),
        (
            &format!("PeterNeumann+c74f20a3a+{key_b64}"),
            "invalid_verifier_key",
        ),
        (
            &format!("PeterNeumann+g74f20a3+{key_b64}"),
            "invalid_verifier_key",
        ),
        (
            &format!("PeterNeumann+-74f20a3+{key_b64}"),
            "invalid_verifier_key",
        ),
        ("PeterNeumann+c74f20a3+", "invalid_verifier_key"),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "invalid_verifier_key",
        ),
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "invalid_verifier_key",
        ),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "invalid_verifier_key",
        ),
        (
            &format!("Peter Neumann+c74f20a3+{key_b64}"),
            "invalid_key_name",
        ),
        (&format!("+c74f20a3+{key_b64}"), "invalid_key_name"),
        (
            &format!("PeterNeumann+c74f20a4+{key_b64}"),
            "verifier_key_id_mismatch",
        ),
        (
            &format!("PeterNeumanm+c74f20a3+{key_b64}"),
            "verifier_key_id_mismatch",
        ),
    ];
    for (vkey, want) in cases {
        assert_eq!(code(NoteVerifier::from_vkey(vkey)), want, "{vkey}");
    }
    // As in the Go tests: no proper substring and no single-byte change is accepted.
    let bytes = GO_VKEY.as_bytes();
    for i in 0..bytes.len() {
        for j in i + 1..=bytes.len() {
            if (i, j) != (0, bytes.len()) {
                let part = std::str::from_utf8(&bytes[i..j]).unwrap();
                let refused = code(NoteVerifier::from_vkey(part));
                assert!(VKEY_REFUSALS.contains(&refused), "{part}: {refused}");
            }
        }
        let mut changed = bytes.to_vec();
        changed[i] += 1;
        let changed = String::from_utf8(changed).unwrap();
        let refused = code(NoteVerifier::from_vkey(&changed));
        assert!(VKEY_REFUSALS.contains(&refused), "{changed}: {refused}");
    }
}
