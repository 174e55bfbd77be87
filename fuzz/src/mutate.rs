//! Inputs made from seeds: a small, fast generator of random bytes and the
//! usual mutations of byte fuzzers (bit flips, boundary values, inserted,
//! deleted and repeated runs, dictionary words, splices of two seeds).

/// xorshift64*: fast, and the same inputs again for the same seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that sit on boundaries, as parsers meet them in lengths and counts.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// An input from `seeds`: usually one seed mutated a few times, sometimes
/// two spliced, now and then plain random bytes.
pub fn input(rng: &mut Rng, seeds: &[Vec<u8>], dictionary: &[Vec<u8>]) -> Vec<u8> {
    if seeds.is_empty() || rng.below(64) == 0 {
        let len = rng.below(256);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut data = seeds[rng.below(seeds.len())].clone();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        mutate(rng, &mut data, seeds, dictionary);
    }
    data
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>], dictionary: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            // A boundary value, in 1, 2, 4 or 8 bytes, either byte order.
            let width = 1 << rng.below(4);
            let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
            let at = rng.below(len);
            let mut bytes = value[..width].to_vec();
            if rng.below(2) == 0 {
                bytes.reverse();
            }
            for (k, b) in bytes.into_iter().enumerate() {
                if let Some(slot) = data.get_mut(at + k) {
                    *slot = b;
                }
            }
        }
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(32));
            data.drain(at..at + n);
        }
        5 if len > 0 => {
            // A run repeated: lists and nesting grow.
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let run = data[at..at + n].to_vec();
            let times = 1 + rng.below(4);
            for _ in 0..times {
                data.splice(at..at, run.iter().copied());
            }
        }
        6 if !dictionary.is_empty() => {
            let word = &dictionary[rng.below(dictionary.len())];
            let at = rng.below(len + 1);
            data.splice(at..at, word.iter().copied());
        }
        7 => {
            let other = &seeds[rng.below(seeds.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        8 if len > 0 => data.truncate(rng.below(len)),
        9 if len > 0 => {
            // A varint made as large as it goes.
            let at = rng.below(len);
            let n = 1 + rng.below(10);
            for k in 0..n {
                if let Some(slot) = data.get_mut(at + k) {
                    *slot = if k + 1 == n { 0x7f } else { 0xff };
                }
            }
        }
        _ if len > 1 => {
            let (i, j) = (rng.below(len), rng.below(len));
            data.swap(i, j);
        }
        _ => data.push(rng.next() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_vary_and_repeat_for_a_seed() {
        let seeds = vec![b"SELECT 1".to_vec(), b"hello world".to_vec()];
        let dictionary = vec![b" FROM ".to_vec()];
        let make = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| input(&mut rng, &seeds, &dictionary))
                .collect::<Vec<_>>()
        };
        let first = make(7);
        assert_eq!(first, make(7));
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
    }
}
