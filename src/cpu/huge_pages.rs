//! The matrices the CPU multiplies by, copied out of the file's map into memory the kernel is asked
//! to back with transparent huge pages (Linux).
//!
//! Why: the CPU kernels stream every weight of a matrix once per product. With 4 KiB pages each
//! 4 KiB read needs its own TLB entry, and under virtualisation a TLB miss walks two page tables;
//! the hardware prefetcher also stops at every 4 KiB page. The file's map is page cache, which is
//! not backed by huge pages on demand, so the weights the plan leaves on the CPU are copied once,
//! at load, into one anonymous mapping advised `MADV_HUGEPAGE` (raw blocks, byte for byte: they
//! stay quantized). Measured on a 2-core virtual machine: Gemma 3 270M decoding on the CPU,
//! 46–48 → 59–63 tokens/s; cold 4096 × 4096 products, Q8_0 13.3 → 18.0 GB/s, Q4_0 11.6 → 14.3.
//!
//! The copy is made only where it can pay ([`worth_copying`]): on Linux with transparent huge
//! pages not switched off, when it fits in half the memory available (the planner counts device
//! memory, not the host's), and unless [`HUGE_PAGES_ENV`] is `0`.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};

/// `0` keeps the CPU's matrices in the file's map (no copy); `1` copies them whatever the memory.
pub const HUGE_PAGES_ENV: &str = "WGQUANT_HUGE_PAGES";

/// Whether copying `bytes` of matrices into huge pages can pay here (see the module's notes).
pub fn worth_copying(bytes: u64) -> bool {
    if bytes == 0 || !cfg!(target_os = "linux") {
        return false;
    }
    if let Some(asked) = crate::gpu::env_switch(HUGE_PAGES_ENV) {
        return asked;
    }
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    if read("/sys/kernel/mm/transparent_hugepage/enabled").contains("[never]") {
        return false;
    }
    let available_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok());
    available_kib.is_some_and(|kib| bytes <= kib * 1024 / 2)
}

/// Where each copied tensor starts in the copy: tensors share one mapping, each aligned to a cache
/// line.
const ALIGN: usize = 64;

/// `len` zero bytes (at least one) of anonymous memory, advised to be backed by transparent huge
/// pages (advice only: where they are off, it is made of small pages).
pub fn huge_page_buffer(len: usize) -> Result<memmap2::MmapMut> {
    let map = memmap2::MmapMut::map_anon(len.max(1))
        .map_err(|e| Error::Invalid(format!("an anonymous map of {len} bytes: {e}")))?;
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    Ok(map)
}

/// The raw blocks of some of a file's tensors, in huge pages where the kernel grants them.
pub struct HugePageCopy {
    map: memmap2::Mmap,
    /// `(offset in the file's data section, offset in the copy, bytes)`, sorted by the first:
    /// looked up by binary search (no hashing per product).
    spans: Vec<(u64, usize, usize)>,
}

impl HugePageCopy {
    /// Copies `tensors` of `file` (duplicates once; those whose data the file does not hold, not
    /// at all). Fails only if the mapping cannot be made, or made read-only; a kernel that
    /// declines huge pages still gives an ordinary copy.
    pub fn new<'a>(file: &GgufFile, tensors: impl IntoIterator<Item = &'a TensorInfo>) -> Result<HugePageCopy> {
        let mut infos: Vec<&TensorInfo> = tensors.into_iter().collect();
        infos.sort_by_key(|t| t.offset);
        infos.dedup_by_key(|t| t.offset);
        // A file parsed from its header alone (a streamed load) holds only the tensors kept so
        // far: the others are left where they are.
        infos.retain(|t| file.tensor_data(t).len() as u64 == t.n_bytes);
        let mut spans = Vec::with_capacity(infos.len());
        let mut len = 0usize;
        for t in &infos {
            spans.push((t.offset, len, t.n_bytes as usize));
            len = (len + t.n_bytes as usize).next_multiple_of(ALIGN);
        }
        let mut map = huge_page_buffer(len)?;
        // In parallel, by tensor: the copy's time is its page faults (the file's and the copy's).
        let mut rest: &mut [u8] = &mut map;
        let mut pieces = Vec::with_capacity(infos.len());
        for (t, &(_, at, n)) in infos.iter().zip(&spans).rev() {
            let (head, piece) = rest.split_at_mut(at);
            pieces.push((&mut piece[..n], file.tensor_data(t)));
            rest = head;
        }
        pieces.into_par_iter().for_each(|(to, from)| to.copy_from_slice(from));
        let map = map.make_read_only().map_err(|e| Error::Invalid(format!("the CPU's weights made read-only: {e}")))?;
        Ok(HugePageCopy { map, spans })
    }

    /// The copy of `t`'s raw blocks, if it was copied.
    pub fn get(&self, t: &TensorInfo) -> Option<&[u8]> {
        let i = self.spans.binary_search_by_key(&t.offset, |s| s.0).ok()?;
        let (_, at, n) = self.spans[i];
        (n == t.n_bytes as usize).then(|| &self.map[at..at + n])
    }

    /// Bytes copied (alignment gaps included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::HugePageCopy;
    use crate::format::GgmlType;
    use crate::gguf::{GgufFile, GgufWriter, TensorData};

    /// Nothing to copy, or more than the machine has, is not worth a copy.
    #[test]
    fn copies_that_cannot_pay_are_not_made() {
        assert!(!super::worth_copying(0));
        if std::env::var(super::HUGE_PAGES_ENV).is_err() {
            assert!(!super::worth_copying(1 << 60), "an exabyte fits in half the available memory?");
        }
    }

    /// Every copied tensor reads back byte for byte; a tensor left out, or one that only shares
    /// an offset with a copied one, is not found.
    #[test]
    fn copied_tensors_read_back_as_in_the_file() {
        let elems = [32u64, 96, 64];
        let mut w = GgufWriter::new();
        for (i, &n) in elems.iter().enumerate() {
            w.add_tensor(&format!("t{i}"), GgmlType::Q8_0, &[n]).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.gguf");
        w.write(&path, |i| Ok(TensorData::Bytes((0..elems[i] * 34 / 32).map(|j| (j * 7 + i as u64) as u8).collect())))
            .unwrap();
        let file = GgufFile::open(&path).unwrap();
        let [t0, t1, t2] = [0, 1, 2].map(|i| file.tensor(&format!("t{i}")).unwrap());
        let copy = HugePageCopy::new(&file, [t2, t0, t2]).unwrap();
        for t in [t0, t2] {
            assert_eq!(copy.get(t).unwrap(), file.tensor_data(t), "{}", t.name);
        }
        assert!(copy.get(t1).is_none());
        let mut impostor = t0.clone();
        impostor.n_bytes += 34;
        assert!(copy.get(&impostor).is_none());
        assert!(copy.len() >= (t0.n_bytes + t2.n_bytes) as usize);
    }
}
