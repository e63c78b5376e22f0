//! The input format of the stream targets: `[flags] [n] [n piece lengths] [payload]`.
//! The payload is fed once whole and once cut into pieces of the given lengths (each byte
//! plus one, used in turn, the rest as the last piece), so libFuzzer mutates both the bytes
//! and the read boundaries. Bit 0 of `flags` selects small size limits, which makes the limit
//! paths reachable with short inputs.

/// A decoded stream input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInput<'a> {
    /// Use small limits.
    pub small_limits: bool,
    /// Piece lengths, cycled; empty means one piece.
    pub piece_lengths: Vec<usize>,
    /// The bytes on the wire.
    pub payload: &'a [u8],
}

impl<'a> StreamInput<'a> {
    /// Decode; short inputs are a payload with no cuts.
    pub fn parse(data: &'a [u8]) -> Self {
        let flags = data.first().copied().unwrap_or(0);
        let n = usize::from(data.get(1).copied().unwrap_or(0));
        let after = data.get(2..).unwrap_or_default();
        let lens = after.get(..n).unwrap_or(after);
        let payload = data.get(2 + lens.len()..).unwrap_or_default();
        StreamInput {
            small_limits: flags & 1 == 1,
            piece_lengths: lens.iter().map(|b| usize::from(*b) + 1).collect(),
            payload,
        }
    }

    /// Encode (for seeds and tests); at most 255 piece lengths, each 1..=256.
    pub fn encode(small_limits: bool, piece_lengths: &[u8], payload: &[u8]) -> Vec<u8> {
        let lens = piece_lengths.get(..255).unwrap_or(piece_lengths);
        let mut out = vec![u8::from(small_limits), lens.len() as u8];
        out.extend_from_slice(lens);
        out.extend_from_slice(payload);
        out
    }

    /// The payload cut at the chosen boundaries.
    pub fn pieces(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.payload;
        let mut lens = self.piece_lengths.iter().cycle();
        while !rest.is_empty() {
            let take = lens.next().copied().unwrap_or(rest.len()).min(rest.len());
            let (piece, tail) = rest.split_at(take);
            out.push(piece);
            rest = tail;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::StreamInput;

    #[test]
    fn encode_parse_and_cut() {
        let data = StreamInput::encode(true, &[0, 2], b"abcdefg");
        let input = StreamInput::parse(&data);
        assert!(input.small_limits);
        assert_eq!(input.piece_lengths, vec![1, 3]);
        assert_eq!(input.pieces(), vec![&b"a"[..], b"bcd", b"e", b"fg"]);
    }

    #[test]
    fn short_inputs_are_one_piece() {
        assert_eq!(StreamInput::parse(b"").pieces(), Vec::<&[u8]>::new());
        let input = StreamInput::parse(b"\x00\x00xyz");
        assert_eq!(input.pieces(), vec![&b"xyz"[..]]);
        assert_eq!(StreamInput::parse(b"\x00\x09ab").payload, b"");
    }
}
