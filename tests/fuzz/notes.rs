//! C2SP signed notes and checkpoints: `Checkpoint::from_note_body`, `open_note`,
//! `verify_note` and `NoteVerifier::from_vkey` on bent notes and keys. A note whose body or
//! signature changed never verifies.

use consentgate::audit::checkpoint::{
    Checkpoint, NoteSigner, NoteVerifier, open_note, sign, verify_note,
};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use crate::cases;

const ORIGIN: &str = "gateway.test/audit";

fn signer() -> &'static NoteSigner {
    static SIGNER: std::sync::OnceLock<NoteSigner> = std::sync::OnceLock::new();
    SIGNER.get_or_init(|| {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        NoteSigner::new(ORIGIN, Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()).unwrap()
    })
}

fn bent_note(note: String) -> impl Strategy<Value = String> {
    let len = note.len();
    (0..5u8, 0..len, any::<u8>(), "\\PC{0,60}").prop_map(move |(how, at, byte, text)| {
        let at = (0..=at)
            .rev()
            .find(|i| note.is_char_boundary(*i))
            .unwrap_or(0);
        let mut bytes = note.clone().into_bytes();
        match how {
            0 => {
                bytes[at] ^= byte | 1;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            1 => note[..at.min(note.len())].to_string(),
            2 => format!("{}{}", &note[..at], text) + &note[at..],
            3 => note.replacen("\n\n", &format!("\n{text}\n\n"), 1),
            _ => note.replace('\n', "\r\n"),
        }
    })
}

proptest! {
    #![proptest_config(cases(384))]

    #[test]
    fn bent_notes_never_verify(
        (note, bent) in (1u64..u64::MAX, any::<[u8; 32]>()).prop_flat_map(|(size, root)| {
            let checkpoint = Checkpoint::new(ORIGIN, size, root).unwrap();
            let note = sign(&checkpoint, signer());
            (Just(note.clone()), bent_note(note))
        })
    ) {
        let verifier = signer().verifier();
        prop_assert!(verify_note(&note, &verifier).is_ok());
        if bent != note {
            prop_assert!(verify_note(&bent, &verifier).is_err(), "a bent note verified: {bent:?}");
        }
        let _ = open_note(&bent, &verifier);
    }

    #[test]
    fn arbitrary_bodies(body in "(\\PC|\n){0,200}") {
        let _ = Checkpoint::from_note_body(&body);
        let verifier = signer().verifier();
        prop_assert!(verify_note(&body, &verifier).is_err());
    }

    #[test]
    fn body_lines(origin in "\\PC{0,30}", size in "[0-9]{0,25}|-1|01", root in "[A-Za-z0-9+/=]{0,50}", ext in "\\PC{0,20}") {
        let body = format!("{origin}\n{size}\n{root}\n{ext}\n");
        if let Ok(parsed) = Checkpoint::from_note_body(&body) {
            prop_assert_eq!(parsed.to_note_body(), body, "one spelling per checkpoint");
        }
    }

    #[test]
    fn verifier_keys(vkey in "\\PC{0,120}") {
        let _ = NoteVerifier::from_vkey(&vkey);
    }
}
