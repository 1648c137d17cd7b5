//! The block transforms of draft-ietf-quic-load-balancers-21, section 5.4: single-pass
//! AES-128-ECB when the server ID and nonce fill one block, the four-pass Feistel
//! network otherwise; plus the keyed permutation that whitens a generator's nonce
//! counter.
//!
//! Everything works on fixed arrays: no allocation, no index that a length from the
//! network can push out of bounds (callers pass plaintext lengths of 5-19 octets,
//! checked when the format is built).

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;

/// One AES block.
pub(crate) const BLOCK: usize = 16;
/// The largest half of a four-pass plaintext (19 octets, rounded up).
const MAX_HALF: usize = 10;

/// A 16-octet AES-128 key schedule.
pub(crate) fn aes128(key: &[u8; BLOCK]) -> Aes128 {
    Aes128::new(GenericArray::from_slice(key))
}

/// AES-128-ECB of one block.
pub(crate) fn encrypt_block(aes: &Aes128, block: [u8; BLOCK]) -> [u8; BLOCK] {
    let mut b = GenericArray::from(block);
    aes.encrypt_block(&mut b);
    b.into()
}

fn decrypt_block(aes: &Aes128, block: [u8; BLOCK]) -> [u8; BLOCK] {
    let mut b = GenericArray::from(block);
    aes.decrypt_block(&mut b);
    b.into()
}

/// Single-pass encryption: `data` is exactly one block (server ID + nonce = 16).
pub(crate) fn single_pass_encrypt(aes: &Aes128, data: &mut [u8; BLOCK]) {
    *data = encrypt_block(aes, *data);
}

/// Single-pass decryption.
pub(crate) fn single_pass_decrypt(aes: &Aes128, data: &mut [u8; BLOCK]) {
    *data = decrypt_block(aes, *data);
}

/// The draft's `expand(length, pass, input_bytes)`: the input in the most significant
/// octets, zeros, then `length` in the fifteenth octet and `pass` in the sixteenth.
fn expand(length: usize, pass: u8, input: &[u8]) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    let n = input.len().min(BLOCK - 2);
    block[..n].copy_from_slice(&input[..n]);
    block[14] = length as u8;
    block[15] = pass;
    block
}

/// The two halves of a four-pass plaintext or ciphertext, each `half` octets.
struct Halves {
    len: usize,
    half: usize,
    left: [u8; MAX_HALF],
    right: [u8; MAX_HALF],
}

impl Halves {
    /// Splits `data` (5-19 octets): with an odd length the middle octet's high nibble
    /// goes left and its low nibble right (step 2 of the draft's algorithm).
    fn split(data: &[u8]) -> Self {
        let len = data.len();
        let half = len.div_ceil(2).min(MAX_HALF);
        let mut h = Self {
            len,
            half,
            left: [0; MAX_HALF],
            right: [0; MAX_HALF],
        };
        h.left[..half].copy_from_slice(&data[..half]);
        h.right[..half].copy_from_slice(&data[len - half..]);
        h.clear_left();
        h.clear_right();
        h
    }

    fn odd(&self) -> bool {
        !self.len.is_multiple_of(2)
    }

    /// "clear the last four bits of left" for odd lengths.
    fn clear_left(&mut self) {
        if self.odd() {
            self.left[self.half - 1] &= 0xf0;
        }
    }

    /// "clear the first four bits of right" for odd lengths.
    fn clear_right(&mut self) {
        if self.odd() {
            self.right[0] &= 0x0f;
        }
    }

    /// `right ^= truncate(AES(expand(len, pass, left)), half)`.
    fn left_into_right(&mut self, aes: &Aes128, pass: u8) {
        let r = encrypt_block(aes, expand(self.len, pass, &self.left[..self.half]));
        for (d, s) in self.right[..self.half].iter_mut().zip(r) {
            *d ^= s;
        }
        self.clear_right();
    }

    /// `left ^= truncate(AES(expand(len, pass, right)), half)`.
    fn right_into_left(&mut self, aes: &Aes128, pass: u8) {
        let r = encrypt_block(aes, expand(self.len, pass, &self.right[..self.half]));
        for (d, s) in self.left[..self.half].iter_mut().zip(r) {
            *d ^= s;
        }
        self.clear_left();
    }

    /// Concatenates the halves back into `out` (the same length as the input); with
    /// an odd length the two zero nibbles are dropped (step 12).
    fn join(&self, out: &mut [u8]) {
        let half = self.half;
        if self.odd() {
            out[..half].copy_from_slice(&self.left[..half]);
            out[half - 1] |= self.right[0];
            out[half..self.len].copy_from_slice(&self.right[1..half]);
        } else {
            out[..half].copy_from_slice(&self.left[..half]);
            out[half..self.len].copy_from_slice(&self.right[..half]);
        }
    }
}

/// Four-pass encryption of `data` (server ID + nonce, 5-19 octets, not 16) in place.
pub(crate) fn four_pass_encrypt(aes: &Aes128, data: &mut [u8]) {
    let mut h = Halves::split(data);
    h.left_into_right(aes, 1);
    h.right_into_left(aes, 2);
    h.left_into_right(aes, 3);
    h.right_into_left(aes, 4);
    h.join(data);
}

/// Four-pass decryption of `data` in place: all four passes, so the nonce comes back
/// too.
pub(crate) fn four_pass_decrypt(aes: &Aes128, data: &mut [u8]) {
    let mut h = Halves::split(data);
    h.right_into_left(aes, 4);
    h.left_into_right(aes, 3);
    h.right_into_left(aes, 2);
    h.left_into_right(aes, 1);
    h.join(data);
}

/// Four-pass decryption of just the server ID, the load balancer's path: three passes
/// when the server ID lies within `left_0` (its length at most the nonce's), four
/// otherwise. Writes the first `sid_len` plaintext octets to `out`.
pub(crate) fn four_pass_server_id(aes: &Aes128, data: &[u8], sid_len: usize, out: &mut [u8]) {
    let mut h = Halves::split(data);
    h.right_into_left(aes, 4);
    h.left_into_right(aes, 3);
    h.right_into_left(aes, 2);
    let nonce_len = h.len - sid_len;
    if sid_len <= nonce_len {
        out[..sid_len].copy_from_slice(&h.left[..sid_len]);
        return;
    }
    h.left_into_right(aes, 1);
    let mut full = [0u8; 2 * MAX_HALF];
    h.join(&mut full[..h.len]);
    out[..sid_len].copy_from_slice(&full[..sid_len]);
}

/// A keyed permutation of the integers below `2^bits` (`bits` 2-128): a four-round
/// Feistel network with AES as the round function over halves of `bits - bits / 2`
/// and `bits / 2` bits. Used to whiten a nonce counter so that consecutive
/// connection IDs show no relationship, while distinct counters stay distinct.
pub(crate) struct Whitener {
    aes: Aes128,
    bits: u32,
}

/// The low `bits` bits set (`bits` up to 128).
pub(crate) fn mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

impl Whitener {
    pub(crate) fn new(key: &[u8; BLOCK], bits: u32) -> Self {
        Self {
            aes: aes128(key),
            bits: bits.clamp(2, 128),
        }
    }

    fn round(&self, round: u8, half: u128) -> u128 {
        let mut block = [0u8; BLOCK];
        // Halves are at most 64 bits: the low eight octets of the big-endian u128.
        block[..8].copy_from_slice(&half.to_be_bytes()[8..]);
        block[14] = self.bits as u8;
        block[15] = 0xa0 | round;
        u128::from_be_bytes(encrypt_block(&self.aes, block))
    }

    /// The permutation of `x` (taken modulo `2^bits`).
    pub(crate) fn permute(&self, x: u128) -> u128 {
        let right_bits = self.bits / 2;
        let left_bits = self.bits - right_bits;
        let x = x & mask(self.bits);
        let mut left = x >> right_bits;
        let mut right = x & mask(right_bits);
        for round in 1..=4u8 {
            if round % 2 == 1 {
                right ^= self.round(round, left) & mask(right_bits);
            } else {
                left ^= self.round(round, right) & mask(left_bits);
            }
        }
        (left << right_bits) | right
    }

    /// The inverse permutation (tests only need it; kept beside `permute`).
    #[cfg(test)]
    pub(crate) fn invert(&self, y: u128) -> u128 {
        let right_bits = self.bits / 2;
        let left_bits = self.bits - right_bits;
        let y = y & mask(self.bits);
        let mut left = y >> right_bits;
        let mut right = y & mask(right_bits);
        for round in (1..=4u8).rev() {
            if round % 2 == 1 {
                right ^= self.round(round, left) & mask(right_bits);
            } else {
                left ^= self.round(round, right) & mask(left_bits);
            }
        }
        (left << right_bits) | right
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::decode_hex;

    fn key(hex: &str) -> Aes128 {
        let k: [u8; 16] = decode_hex(hex).unwrap().try_into().unwrap();
        aes128(&k)
    }

    #[test]
    fn expand_matches_the_draft_example() {
        // expand(0x06, 0x02, 0xaaba3c) = 0xaaba3c00000000000000000000000602
        assert_eq!(
            expand(6, 2, &[0xaa, 0xba, 0x3c]).to_vec(),
            decode_hex("aaba3c00000000000000000000000602").unwrap()
        );
    }

    #[test]
    fn split_matches_the_draft_example() {
        // 0x7040b81b55ccf3 splits into 0x7040b810 and 0x0b55ccf3.
        let h = Halves::split(&decode_hex("7040b81b55ccf3").unwrap());
        assert_eq!(h.left[..4], decode_hex("7040b810").unwrap()[..]);
        assert_eq!(h.right[..4], decode_hex("0b55ccf3").unwrap()[..]);
    }

    /// Section 5.4.2.4, "Encryption Example", step by step.
    #[test]
    fn four_pass_encryption_example_step_by_step() {
        let aes = key("fdf726a9893ec05c0632d3956680baf0");
        let pt = decode_hex("31441a9c69c275").unwrap();
        let mut h = Halves::split(&pt);
        assert_eq!(h.left[..4], decode_hex("31441a90").unwrap()[..]);
        assert_eq!(h.right[..4], decode_hex("0c69c275").unwrap()[..]);
        let out = encrypt_block(&aes, expand(7, 1, &h.left[..4]));
        assert_eq!(
            out.to_vec(),
            decode_hex("a255dd8cdacf01948d3a848c3c7fee23").unwrap()
        );
        h.left_into_right(&aes, 1);
        assert_eq!(h.right[..4], decode_hex("0e3c1ff9").unwrap()[..]);
        h.right_into_left(&aes, 2);
        assert_eq!(h.left[..4], decode_hex("d4a04850").unwrap()[..]);
        h.left_into_right(&aes, 3);
        assert_eq!(h.right[..4], decode_hex("09be054a").unwrap()[..]);
        h.right_into_left(&aes, 4);
        assert_eq!(h.left[..4], decode_hex("67947d20").unwrap()[..]);
        let mut ct = [0u8; 7];
        h.join(&mut ct);
        assert_eq!(ct.to_vec(), decode_hex("67947d29be054a").unwrap());

        let mut back = ct;
        four_pass_decrypt(&aes, &mut back);
        assert_eq!(back.to_vec(), pt);
        let mut sid = [0u8; 3];
        four_pass_server_id(&aes, &ct, 3, &mut sid);
        assert_eq!(sid.to_vec(), decode_hex("31441a").unwrap());
    }

    #[test]
    fn whitener_is_a_permutation_on_small_widths() {
        for bits in [2u32, 3, 7, 8, 11] {
            let w = Whitener::new(&[7; 16], bits);
            let mut seen = std::collections::HashSet::new();
            for x in 0..(1u128 << bits) {
                let y = w.permute(x);
                assert!(y <= mask(bits));
                assert_eq!(w.invert(y), x);
                assert!(seen.insert(y), "bits {bits}: {x} collides");
            }
        }
    }

    #[test]
    fn whitener_inverts_on_wide_widths() {
        for bits in [24u32, 63, 64, 65, 127, 128] {
            let w = Whitener::new(&[9; 16], bits);
            for x in [0u128, 1, 2, 12345, u128::MAX] {
                let x = x & mask(bits);
                assert_eq!(w.invert(w.permute(x)), x);
            }
        }
    }
}
