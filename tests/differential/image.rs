//! Image contents: a per-block pattern that names its own block number, and
//! a compact description of any buffer (image or guest memory) in terms of
//! that pattern, uniform fills and hashes, so observations stay readable.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

pub const DISK_SIZE: u64 = 4 << 20;
pub const CD_SIZE: u64 = 1 << 20;

/// Block `n`'s initial contents: `n` and `!n` in the first 8 bytes, then bytes
/// that depend on both offset and `n`, so no two blocks and no fill look alike.
pub fn pattern(block_size: usize, n: u64) -> Vec<u8> {
    let mut block = vec![0u8; block_size];
    block[0..4].copy_from_slice(&(n as u32).to_le_bytes());
    block[4..8].copy_from_slice(&(!(n as u32)).to_le_bytes());
    for (i, byte) in block.iter_mut().enumerate().skip(8) {
        *byte = (i as u8).wrapping_mul(3) ^ (n as u8) ^ ((i >> 8) as u8);
    }
    block
}

pub fn initial_image(size: usize, block_size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    for n in 0..(size / block_size) as u64 {
        data.extend_from_slice(&pattern(block_size, n));
    }
    data.resize(size, 0);
    data
}

#[derive(PartialEq)]
enum Label {
    Fill(u8),
    Block(u64),
    Hash(u64),
}

fn classify(chunk: &[u8]) -> Label {
    if chunk.iter().all(|&b| b == chunk[0]) {
        return Label::Fill(chunk[0]);
    }
    if chunk.len() >= 8 {
        let n = u64::from(u32::from_le_bytes(chunk[0..4].try_into().expect("4 bytes")));
        if chunk == pattern(chunk.len(), n).as_slice() {
            return Label::Block(n);
        }
    }
    let mut hasher = DefaultHasher::new();
    chunk.hash(&mut hasher);
    Label::Hash(hasher.finish())
}

/// Run-length description in units of `block_size`, e.g.
/// `0-1:fill55 2-9:blk2-9 10:h3f2a...`.
pub fn describe(data: &[u8], block_size: usize) -> String {
    let labels: Vec<Label> = data.chunks(block_size).map(classify).collect();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < labels.len() {
        let mut end = start;
        while end + 1 < labels.len() {
            let continues = match (&labels[end], &labels[end + 1]) {
                (Label::Fill(a), Label::Fill(b)) => a == b,
                (Label::Block(a), Label::Block(b)) => a + 1 == *b,
                _ => false,
            };
            if !continues {
                break;
            }
            end += 1;
        }
        let range = if start == end {
            format!("{start}")
        } else {
            format!("{start}-{end}")
        };
        let what = match (&labels[start], &labels[end]) {
            (Label::Fill(b), _) => format!("fill{b:02x}"),
            (Label::Block(a), Label::Block(b)) if a != b => format!("blk{a}-{b}"),
            (Label::Block(a), _) => format!("blk{a}"),
            (Label::Hash(h), _) => format!("h{:08x}", h >> 32),
        };
        parts.push(format!("{range}:{what}"));
        start = end + 1;
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_image_is_described_as_one_run_of_its_own_blocks() {
        assert_eq!(describe(&initial_image(64 * 512, 512), 512), "0-63:blk0-63");
        assert_eq!(describe(&initial_image(8 * 2048, 2048), 2048), "0-7:blk0-7");
    }

    #[test]
    fn fills_moved_blocks_and_foreign_data_are_told_apart() {
        let mut data = initial_image(8 * 512, 512);
        data[512..1024].fill(0x55);
        data[1024..1536].fill(0x55);
        data[1536..2048].copy_from_slice(&pattern(512, 7));
        data[2048] ^= 1;
        let text = describe(&data, 512);
        assert!(text.starts_with("0:blk0 1-2:fill55 3:blk7 4:h"), "{text}");
        assert!(text.ends_with(" 5-7:blk5-7"), "{text}");
    }

    #[test]
    fn every_block_pattern_is_distinct_and_not_a_fill() {
        let a = pattern(512, 1);
        let b = pattern(512, 257);
        assert_ne!(a, b);
        assert!(!a.iter().all(|&x| x == a[0]));
    }
}
