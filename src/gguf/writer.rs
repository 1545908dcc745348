//! The GGUF writer (version 3): metadata, then tensor infos, then each tensor's data at an aligned
//! offset. Tensor data is produced one tensor at a time so a large model never has to sit in memory
//! whole, and [`TensorData::Zeros`] leaves a hole in the file (a sparse file on most filesystems),
//! which is how tests build 7B-shaped models that cost no disk.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::reader::align_up;
use super::value::Value;
use super::DEFAULT_ALIGNMENT;
use crate::error::{Error, Result};
use crate::format::GgmlType;

/// What to write for one tensor.
pub enum TensorData {
    /// Raw blocks, exactly `n_bytes` long.
    Bytes(Vec<u8>),
    /// All zero: nothing is written, the file is extended over it.
    Zeros,
}

struct PendingTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    n_bytes: u64,
}

/// Collects metadata and tensor descriptions, then writes the file in one pass.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a key (replacing an earlier value for the same key).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Describe a tensor (GGML dimension order: `dims[0]` is the row length).
    pub fn add_tensor(&mut self, name: &str, ty: GgmlType, dims: &[u64]) -> Result<&mut Self> {
        if dims.is_empty() || dims.len() > 4 || dims.contains(&0) {
            return Err(Error::Shape(format!("tensor `{name}`: dimensions {dims:?}")));
        }
        if !dims[0].is_multiple_of(ty.block_elems() as u64) {
            return Err(Error::Shape(format!(
                "tensor `{name}`: row length {} is not a multiple of {ty}'s block",
                dims[0]
            )));
        }
        let n: u64 = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::Shape(format!("tensor `{name}`: {dims:?} overflows")))?;
        let n_bytes = ty.bytes_for(n)?;
        self.tensors.push(PendingTensor { name: name.to_string(), ty, dims: dims.to_vec(), n_bytes });
        Ok(self)
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_i128())
            .map(|a| a as u64)
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Write the file to `path`; `data(i)` gives the data of the i-th tensor added.
    pub fn write(&self, path: &Path, mut data: impl FnMut(usize) -> Result<TensorData>) -> Result<()> {
        let io = |e| Error::io(path, e);
        let file = File::create(path).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let alignment = self.alignment();

        let mut header = Vec::new();
        header.extend_from_slice(super::GGUF_MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut header, key);
            header.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut header, value);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = align_up(offset + t.n_bytes, alignment);
        }
        let data_start = align_up(header.len() as u64, alignment);
        header.resize(data_start as usize, 0);
        out.write_all(&header).map_err(io)?;

        let mut pos = data_start;
        for (i, t) in self.tensors.iter().enumerate() {
            let target = data_start + offsets[i];
            match data(i)? {
                TensorData::Bytes(bytes) => {
                    if bytes.len() as u64 != t.n_bytes {
                        return Err(Error::Shape(format!(
                            "tensor `{}`: got {} bytes of data, its shape and type need {}",
                            t.name,
                            bytes.len(),
                            t.n_bytes
                        )));
                    }
                    write_zeros(&mut out, target - pos).map_err(io)?;
                    out.write_all(&bytes).map_err(io)?;
                    pos = target + t.n_bytes;
                }
                TensorData::Zeros => {
                    out.flush().map_err(io)?;
                    out.seek(SeekFrom::Start(target + t.n_bytes)).map_err(io)?;
                    pos = target + t.n_bytes;
                }
            }
        }
        out.flush().map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        // Extends the file over trailing zero tensors without writing them.
        file.set_len(pos).map_err(io)?;
        Ok(())
    }
}

fn write_zeros(out: &mut impl Write, n: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 256] = [0; 256];
    let mut left = n;
    while left > 0 {
        let k = left.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        left -= k as u64;
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}
