//! The one binary encoding used on the wire and on disk.
//!
//! Owns the bincode 2 configuration (little-endian, fixed-width integers, a decode limit) and
//! the bounded container types that every untrusted length goes through. Nothing here ever
//! allocates in proportion to a length read from input before the items are actually present.

use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{BorrowDecode, Decode, Encode};

/// Upper bound on the bytes a single decode may consume (the whole-message ceiling).
pub const MAX_DECODE_BYTES: usize = 32 * 1024 * 1024;

/// The fixed configuration: little-endian, fixed-width integers (u32 = 4 bytes, u64 = 8 bytes,
/// lengths and enum tags as fixed-width integers), and a decode limit.
pub type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MAX_DECODE_BYTES>,
>;

pub const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DECODE_BYTES>();

/// Encodes a value; the same value always yields the same bytes.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec has no failure mode for our types: no limit applies on encode and
    // every type is a plain struct, enum, array or bounded container.
    bincode::encode_to_vec(value, CONFIG).expect("encoding into memory cannot fail")
}

/// Encodes a value, appending to `out`.
pub fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) {
    out.reserve(64);
    struct VecWriter<'a>(&'a mut Vec<u8>);
    impl bincode::enc::write::Writer for VecWriter<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    bincode::encode_into_writer(value, VecWriter(out), CONFIG)
        .expect("encoding into memory cannot fail");
}

/// The length of a value's encoding, without building it.
pub fn encoded_len<T: Encode>(value: &T) -> usize {
    let mut encoder =
        bincode::enc::EncoderImpl::new(bincode::enc::write::SizeWriter::default(), CONFIG);
    value
        .encode(&mut encoder)
        .expect("encoding into a counter cannot fail");
    encoder.into_writer().bytes_written
}

/// Decodes a value that must occupy `bytes` exactly: trailing bytes are an error, so every
/// accepted encoding is the canonical one.
pub fn decode_exact<T: Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, used) = bincode::decode_from_slice(bytes, CONFIG)?;
    if used != bytes.len() {
        return Err(DecodeError::OtherString(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Initial capacity for a decoded list: never more than this many items are reserved up
/// front, whatever length the input claims; the vector grows only as items really decode.
const INITIAL_ITEMS: usize = 64;

fn decode_len<D: Decoder>(decoder: &mut D, max: usize, what: &str) -> Result<usize, DecodeError> {
    let len = u64::decode(decoder)?;
    if len > max as u64 {
        return Err(DecodeError::OtherString(format!(
            "{what} length {len} exceeds the cap of {max}"
        )));
    }
    Ok(len as usize)
}

/// A list with at most `MAX` items; encoded as a u64 length followed by the items.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    pub const MAX_LEN: usize = MAX;

    /// Wraps `items`, or returns them back when there are more than `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, Vec<T>> {
        if items.len() > MAX {
            Err(items)
        } else {
            Ok(Self(items))
        }
    }

    /// Wraps the first `MAX` of `items`: for lists whose builder already caps them.
    pub fn truncating(mut items: Vec<T>) -> Self {
        items.truncate(MAX);
        Self(items)
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn into_inner(self) -> Vec<T> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T, const MAX: usize> std::ops::Deref for BoundedVec<T, MAX> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Encode, const MAX: usize> Encode for BoundedVec<T, MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        for item in &self.0 {
            item.encode(encoder)?;
        }
        Ok(())
    }
}

impl<Context, T: Decode<Context>, const MAX: usize> Decode<Context> for BoundedVec<T, MAX> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = decode_len(decoder, MAX, "list")?;
        let mut items = Vec::with_capacity(len.min(INITIAL_ITEMS));
        for _ in 0..len {
            items.push(T::decode(decoder)?);
        }
        Ok(Self(items))
    }
}

impl<'de, Context, T: Decode<Context>, const MAX: usize> BorrowDecode<'de, Context>
    for BoundedVec<T, MAX>
{
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Self::decode(decoder)
    }
}

/// A UTF-8 string of at most `MAX` bytes; encoded as a u64 byte length followed by the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    /// Wraps `text`, or returns it back when it is longer than `MAX` bytes.
    pub fn new(text: String) -> Result<Self, String> {
        if text.len() > MAX {
            Err(text)
        } else {
            Ok(Self(text))
        }
    }

    /// Cuts `text` at a character boundary so it fits.
    pub fn truncating(text: &str) -> Self {
        let mut end = text.len().min(MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self(text[..end].to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> std::fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> Encode for BoundedString<MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        bincode::enc::write::Writer::write(encoder.writer(), self.0.as_bytes())
    }
}

impl<Context, const MAX: usize> Decode<Context> for BoundedString<MAX> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = decode_len(decoder, MAX, "string")?;
        // len <= MAX, a small compile-time constant, so this allocation is bounded.
        let mut bytes = vec![0u8; len];
        bincode::de::read::Reader::read(decoder.reader(), &mut bytes)?;
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|e| DecodeError::Utf8 {
                inner: e.utf8_error(),
            })
    }
}

impl<'de, Context, const MAX: usize> BorrowDecode<'de, Context> for BoundedString<MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Self::decode(decoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_little_endian() {
        assert_eq!(encode(&1u32), vec![1, 0, 0, 0]);
        assert_eq!(encode(&0x0102u64), vec![2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(&[7u8; 3]), vec![7, 7, 7], "arrays carry no length");
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let list = BoundedVec::<u64, 8>::new(vec![1, 2, 3]).expect("within the cap");
        let text = BoundedString::<16>::new("noded".to_string()).expect("within the cap");
        assert_eq!(encoded_len(&list), encode(&list).len());
        assert_eq!(encoded_len(&text), encode(&text).len());
        assert_eq!(encoded_len(&(7u32, [0u8; 5])), 9);
    }

    #[test]
    fn bounded_vec_rejects_a_claimed_length_over_its_cap_without_allocating() {
        let mut bytes = encode(&(u64::MAX));
        bytes.extend_from_slice(&[0; 8]);
        let err = decode_exact::<BoundedVec<u64, 10>>(&bytes).unwrap_err();
        assert!(err.to_string().contains("exceeds the cap"), "{err}");
    }

    #[test]
    fn bounded_vec_with_a_length_longer_than_the_input_fails_cleanly() {
        let bytes = encode(&5u64);
        assert!(decode_exact::<BoundedVec<u64, 10>>(&bytes).is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&3u32);
        bytes.push(0);
        assert!(decode_exact::<u32>(&bytes).is_err());
    }

    #[test]
    fn bounded_string_round_trips_and_truncates_on_char_boundary() {
        let s = BoundedString::<4>::truncating("aé€");
        assert_eq!(s.as_str(), "aé");
        let back: BoundedString<4> = decode_exact(&encode(&s)).unwrap();
        assert_eq!(back, s);
        assert!(decode_exact::<BoundedString<2>>(&encode(&s)).is_err());
    }
}
