//! Known-answer tests: published vectors of the Certificate Transparency reference code.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

fn hex(s: &str) -> Hash {
    assert_eq!(s.len(), 64, "{s}");
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// github.com/transparency-dev/merkle testonly/constants.go: the CT leaf inputs and roots.
const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn ct_tree() -> (Frontier, MemoryStore) {
    MemoryStore::build(CT_LEAVES.iter().map(|l| leaf_hash(&unhex(l)))).unwrap()
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    let want = hex(CT_ROOTS[0]);
    assert_eq!(empty_root(), want);
    assert_eq!(root(0, &MemoryStore::new()).unwrap(), want);
    assert_eq!(Frontier::empty().root(), want);
}

#[test]
fn ct_reference_roots() {
    let (_, store) = ct_tree();
    for (size, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(root(size as u64, &store).unwrap(), hex(want), "size {size}");
    }
    let (frontier, _) = ct_tree();
    assert_eq!(frontier.root(), hex(CT_ROOTS[8]));
}

#[test]
fn ct_reference_hasher_vector() {
    // transparency-dev/merkle rfc6962_test.go: HashLeaf("L123456").
    let want = hex("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56");
    assert_eq!(leaf_hash(b"L123456"), want);
}

#[test]
fn ct_reference_inclusion_proofs() {
    // transparency-dev/merkle proof/verify_test.go (there 1-based) and testonly/reference_test.go.
    let cases: [(u64, u64, &[&str]); 7] = [
        (0, 1, &[]),
        (
            0,
            2,
            &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
        ),
        (
            1,
            2,
            &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    let (_, store) = ct_tree();
    for (index, size, want) in cases {
        let want: Vec<Hash> = want.iter().map(|h| hex(h)).collect();
        assert_eq!(
            inclusion_proof(index, size, &store).unwrap(),
            want,
            "{index} in {size}"
        );
        let leaf = leaf_hash(&unhex(CT_LEAVES[index as usize]));
        assert!(verify_inclusion(
            &leaf,
            index,
            size,
            &want,
            &hex(CT_ROOTS[size as usize])
        ));
    }
}

#[test]
fn ct_reference_consistency_proofs() {
    // transparency-dev/merkle proof/verify_test.go consistencyProofs.
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let (_, store) = ct_tree();
    for (old, new, want) in cases {
        let want: Vec<Hash> = want.iter().map(|h| hex(h)).collect();
        assert_eq!(
            consistency_proof(old, new, &store).unwrap(),
            want,
            "{old} to {new}"
        );
        let (old_root, new_root) = (hex(CT_ROOTS[old as usize]), hex(CT_ROOTS[new as usize]));
        assert!(verify_consistency(old, new, &old_root, &new_root, &want));
    }
}

#[test]
fn golden_roots_of_larger_trees() {
    // transparency-dev/merkle compact/range_test.go TestGetRootHashGolden: leaf i is the two
    // bytes of i, little-endian.
    let cases = [
        (10, "VjWMPSYNtCuCNlF/RLnQy6HcwSk6CIipfxm+hettA+4="),
        (15, "j4SulYmocFuxdeyp12xXCIgK6PekBcxzAIj4zbQzNEI="),
        (16, "c+4Uc6BCMOZf/v3NZK1kqTUJe+bBoFtOhP+P3SayKRE="),
        (100, "dUh9hYH88p0CMoHkdr1wC2szbhcLAXOejWpINIooKUY="),
        (255, "SmdsuKUqiod3RX2jyF2M6JnbdE4QuTwwipfAowI4/i0="),
        (256, "qFI0t/tZ1MdOYgyPpPzHFiZVw86koScXy9q3FU5casA="),
        (1000, "RXrgb8xHd55Y48FbfotJwCbV82Kx22LZfEbmBGAvwlQ="),
        (4095, "cWRFdQhPcjn9WyBXE/r1f04ejxIm5lvg40DEpRBVS0w="),
        (4096, "6uU/phfHg1n/GksYT6TO9aN8EauMCCJRl3dIK0HDs2M="),
        (10000, "VZcav65F9haHVRk3wre2axFoBXRNeUh/1d9d5FQfxIg="),
        (65535, "iPuVYJhP6SEE4gUFp8qbafd2rYv9YTCDYqAxCj8HdLM="),
    ];
    let leaves = (0u64..65535).map(|i| leaf_hash(&[(i & 0xff) as u8, (i >> 8) as u8]));
    let (frontier, store) = MemoryStore::build(leaves).unwrap();
    assert_eq!(frontier.size(), 65535);
    for (size, want) in cases {
        let want: Hash = STANDARD.decode(want).unwrap().try_into().unwrap();
        assert_eq!(root(size, &store).unwrap(), want, "size {size}");
    }
    assert_eq!(frontier.root(), root(65535, &store).unwrap());
}
