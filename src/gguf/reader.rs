//! The GGUF reader. Every length, count and offset read from the file is checked against what is
//! left of the file before it is used, so a truncated or hostile file gives an [`Error::Gguf`] naming
//! the byte at fault instead of a panic, a hang or a huge allocation.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use super::value::{Value, ValueType};
use super::DEFAULT_ALIGNMENT;
use crate::error::{Error, Result};
use crate::format::GgmlType;

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// GGML tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Nested arrays deeper than this are not produced by any real tool; refusing them bounds recursion.
const MAX_ARRAY_DEPTH: u32 = 4;

/// One tensor's entry in the index.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// GGML order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    /// Offset of the tensor's first byte, relative to the start of the data section.
    pub offset: u64,
    /// Bytes of the tensor's raw blocks.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Elements per row (`dims[0]`).
    pub fn row_len(&self) -> usize {
        self.dims[0] as usize
    }
    /// Number of rows: the product of every dimension after the first.
    pub fn n_rows(&self) -> usize {
        self.dims[1..].iter().product::<u64>() as usize
    }
    pub fn row_bytes(&self) -> usize {
        (self.n_bytes / self.n_rows().max(1) as u64) as usize
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
    /// The header alone, of a file of `file_len` bytes whose tensors stream past (see
    /// [`GgufFile::parse_header`]).
    Header {
        header: Vec<u8>,
        file_len: u64,
    },
}

impl Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
            Backing::Header { header, .. } => header,
        }
    }
}

/// A parsed GGUF file. Tensor data is not copied: [`GgufFile::tensor_data`] returns views into the map.
pub struct GgufFile {
    bytes: Backing,
    path: Option<PathBuf>,
    /// Of a bare header: tensors kept on the host, by their offset in the data section.
    held: HashMap<u64, Vec<u8>>,
    pub version: u32,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-map and parse a file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap-based loader we assume the file is not
        // truncated by another process while we hold it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut gguf = Self::parse(Backing::Mmap(map))?;
        gguf.path = Some(path.to_path_buf());
        Ok(gguf)
    }

    /// Parse a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(Backing::Owned(bytes))
    }

    /// The header (metadata and tensor index) of a file of `file_len` bytes, from its first bytes
    /// `prefix`, with every tensor checked to lie inside `file_len`; `Ok(None)` when the header
    /// goes on past `prefix`. The file holds no tensor data: [`GgufFile::tensor_data`] is empty
    /// for every tensor but those given to [`GgufFile::hold`]. For files that stream past, as a
    /// download into GPU buffers (see [`crate::model::stream`]).
    pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<Option<GgufFile>> {
        if prefix.len() as u64 > file_len {
            return Err(Error::Invalid(format!("{} bytes of a file of {file_len}", prefix.len())));
        }
        let (parsed, short) = Self::parse_prefix(prefix, file_len);
        match parsed {
            Ok(file) => {
                let header = prefix[..file.data_offset.min(prefix.len() as u64) as usize].to_vec();
                Ok(Some(GgufFile { bytes: Backing::Header { header, file_len }, ..file }))
            }
            Err(_) if short => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether this is a bare header ([`GgufFile::parse_header`]), which holds no tensor data.
    pub fn is_header_only(&self) -> bool {
        matches!(self.bytes, Backing::Header { .. })
    }

    /// Keeps `data` as the bytes of tensor `name` in a file parsed by
    /// [`GgufFile::parse_header`] (a tensor the CPU reads after the stream has gone by).
    pub fn hold(&mut self, name: &str, data: Vec<u8>) -> Result<()> {
        let info = self.require_tensor(name)?;
        if !self.is_header_only() {
            return Err(Error::Invalid(format!("holding tensor `{name}` in a file that has its data")));
        }
        if data.len() as u64 != info.n_bytes {
            return Err(Error::Invalid(format!("{} bytes for tensor `{name}` of {}", data.len(), info.n_bytes)));
        }
        self.held.insert(info.offset, data);
        Ok(())
    }

    fn parse(bytes: Backing) -> Result<GgufFile> {
        let len = bytes.len() as u64;
        let parsed = Self::parse_prefix(&bytes, len).0?;
        Ok(GgufFile { bytes, ..parsed })
    }

    /// Parses `bytes`, the first bytes of a file of `file_len`, into a file without its bytes;
    /// also says whether a failure was only for want of the bytes after them.
    fn parse_prefix(bytes: &[u8], file_len: u64) -> (Result<GgufFile>, bool) {
        let mut cur = Cursor { buf: bytes, pos: 0, file_len, short: false };
        let parsed = Self::parse_index(&mut cur);
        (parsed, cur.short)
    }

    /// Everything but the bytes: `bytes` and `path` are left empty.
    fn parse_index(cur: &mut Cursor<'_>) -> Result<GgufFile> {
        let magic = cur.take(4, "magic")?;
        if magic != GGUF_MAGIC {
            return Err(cur.err_at(0, format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")));
        }
        let version = cur.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(cur.err_at(4, format!("unsupported GGUF version {version} (this reader knows 2 and 3)")));
        }
        let n_tensors = cur.u64("tensor count")?;
        let n_kv = cur.u64("metadata count")?;
        // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor info at
        // least 8 + 4 + 8 + 4 + 8: counts that cannot fit are rejected before any allocation.
        cur.check_count(n_kv, 13, "metadata count")?;

        let mut metadata = Vec::with_capacity(cur.capacity(n_kv, 13));
        let mut key_index = HashMap::with_capacity(cur.capacity(n_kv, 13));
        for _ in 0..n_kv {
            let key_pos = cur.pos;
            let key = cur.string("metadata key")?;
            let ty = cur.value_type(&key)?;
            let value = cur.value(ty, &key, 0)?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(cur.err_at(key_pos, format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }

        let alignment = match key_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_i128() {
                Some(a) if a > 0 && a <= 1 << 20 && (a as u64).is_power_of_two() => a as u64,
                _ => return Err(cur.err(format!("general.alignment {v:?} is not a power of two"))),
            },
        };

        cur.check_count(n_tensors, 32, "tensor count")?;
        let mut tensors = Vec::with_capacity(cur.capacity(n_tensors, 32));
        let mut tensor_index = HashMap::with_capacity(cur.capacity(n_tensors, 32));
        for _ in 0..n_tensors {
            let info_pos = cur.pos;
            let info = cur.tensor_info(alignment)?;
            if tensor_index.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(cur.err_at(info_pos, format!("duplicate tensor `{}`", info.name)));
            }
            tensors.push(info);
        }

        let data_offset = align_up(cur.pos as u64, alignment);
        let file_len = cur.file_len;
        for t in &tensors {
            let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(Error::Gguf {
                        offset: data_offset.saturating_add(t.offset),
                        msg: format!(
                        "tensor `{}` ({} bytes at data offset {}) extends past the end of the file ({file_len} bytes)",
                        t.name, t.n_bytes, t.offset
                    ),
                    })
                }
            }
        }

        Ok(GgufFile {
            bytes: Backing::Owned(Vec::new()),
            path: None,
            held: HashMap::new(),
            version,
            metadata,
            key_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> u64 {
        match &self.bytes {
            Backing::Header { file_len, .. } => *file_len,
            bytes => bytes.len() as u64,
        }
    }

    // ---- metadata ----

    /// Every key/value in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    /// An unsigned integer of any stored width that fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_i128().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| v.type_error(key, "u32"))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_i128().and_then(|i| u64::try_from(i).ok()).ok_or_else(|| v.type_error(key, "u64"))
    }

    /// Any numeric value as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64().map(|f| f as f32).ok_or_else(|| v.type_error(key, "f32"))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| v.type_error(key, "bool"))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| v.type_error(key, "string"))
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| v.type_error(key, "array"))
    }

    /// An array of strings (a vocabulary, merges).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?.iter().map(|v| v.as_str().ok_or_else(|| v.type_error(key, "array of string"))).collect()
    }

    /// An array of numbers as f32 (token scores).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.get_array(key)?
            .iter()
            .map(|v| v.as_f64().map(|f| f as f32).ok_or_else(|| v.type_error(key, "array of f32")))
            .collect()
    }

    /// An array of integers as i64 (token types).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        self.get_array(key)?
            .iter()
            .map(|v| v.as_i128().map(|i| i as i64).ok_or_else(|| v.type_error(key, "array of integers")))
            .collect()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    // ---- tensors ----

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    /// The raw blocks of a tensor, as stored (bounds were checked when the file was opened); of a
    /// bare header ([`GgufFile::parse_header`]), those it holds, and nothing for the others.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        if let Backing::Header { .. } = self.bytes {
            return held_range(&self.held, info).unwrap_or(&[]);
        }
        let start = (self.data_offset + info.offset) as usize;
        &self.bytes[start..start + info.n_bytes as usize]
    }

    /// The raw blocks of the tensor called `name`.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        Ok(self.tensor_data(self.require_tensor(name)?))
    }
}

/// The bytes of `info` (a tensor, or a row range of one: a fused tensor's part) among tensors
/// held by their offset in the data section.
pub(crate) fn held_range<'h>(held: &'h HashMap<u64, Vec<u8>>, info: &TensorInfo) -> Option<&'h [u8]> {
    // A part lies inside one tensor, which starts at or before it: the nearest such start wins
    // (tensors do not overlap).
    let (start, data) = held.iter().filter(|(&start, _)| start <= info.offset).max_by_key(|(&start, _)| start)?;
    let from = (info.offset - start) as usize;
    data.get(from..from.checked_add(info.n_bytes as usize)?)
}

pub(crate) fn align_up(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

/// A position in the file's bytes; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The whole file's length: `buf` may be only its first bytes.
    file_len: u64,
    /// Set when a read went past `buf` but not past `file_len`.
    short: bool,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: String) -> Error {
        self.err_at(self.pos, msg)
    }

    fn err_at(&self, pos: usize, msg: String) -> Error {
        Error::Gguf { offset: pos as u64, msg }
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            self.short = (self.pos as u64).saturating_add(n) <= self.file_len;
            return Err(
                self.err(format!("{what}: needs {n} bytes but only {} remain (file truncated?)", self.remaining()))
            );
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Room to reserve for `count` items of at least `min_item_bytes`: no more than the bytes
    /// at hand could hold, so that a header read from a prefix (whose counts are checked only
    /// against the announced length) cannot make a huge allocation.
    fn capacity(&self, count: u64, min_item_bytes: u64) -> usize {
        count.min(self.remaining() / min_item_bytes.max(1)) as usize
    }

    /// Reject a count of items that could not possibly fit in the rest of the file.
    fn check_count(&self, count: u64, min_item_bytes: u64, what: &str) -> Result<()> {
        let left = self.file_len.saturating_sub(self.pos as u64);
        if count.saturating_mul(min_item_bytes) > left {
            return Err(self.err(format!("{what} {count} cannot fit in the {left} bytes left in the file")));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let start = self.pos;
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err_at(start, format!("{what} is not valid UTF-8")))
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType> {
        let pos = self.pos;
        let id = self.u32("value type")?;
        ValueType::from_id(id).ok_or_else(|| self.err_at(pos, format!("key `{key}`: unknown value type {id}")))
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(key)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(key)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Bool => {
                let pos = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => return Err(self.err_at(pos, format!("key `{key}`: bool byte {b} is neither 0 nor 1"))),
                }
            }
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!("key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let elem_ty = self.value_type(key)?;
                let count = self.u64(key)?;
                self.check_count(count, elem_ty.min_size(), &format!("key `{key}`: array length"))?;
                let mut items = Vec::with_capacity(self.capacity(count, elem_ty.min_size()));
                for _ in 0..count {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                Value::Array(elem_ty, items)
            }
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo> {
        let start = self.pos;
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(
                self.err_at(start, format!("tensor `{name}`: {n_dims} dimensions (GGML allows 1 to {MAX_DIMS})"))
            );
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64("tensor dimension")?);
        }
        let type_pos = self.pos;
        let type_id = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;
        let at = |msg: String| Error::Gguf { offset: start as u64, msg: format!("tensor `{name}`: {msg}") };

        let ty = GgmlType::from_id(type_id)
            .map_err(|e| Error::Gguf { offset: type_pos as u64, msg: format!("tensor `{name}`: {e}") })?;
        if dims.contains(&0) {
            return Err(at(format!("dimension of size 0 in {dims:?}")));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| at(format!("dimensions {dims:?} overflow the element count")))?;
        if dims[0] % ty.block_elems() as u64 != 0 {
            return Err(at(format!(
                "row length {} is not a multiple of {}'s block of {} elements",
                dims[0],
                ty,
                ty.block_elems()
            )));
        }
        let n_bytes = ty.bytes_for(n_elements).map_err(|e| at(e.to_string()))?;
        if offset % alignment != 0 {
            return Err(at(format!("data offset {offset} is not aligned to {alignment}")));
        }
        Ok(TensorInfo { name, ty, dims, offset, n_bytes })
    }
}
