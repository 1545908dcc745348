//! A GGUF file that streams past, in file order (a download), loaded without ever being held
//! whole: the header is parsed as soon as it has arrived, and each tensor's bytes are kept only
//! from their arrival until the loader has uploaded them ([`crate::Model::from_stream`]).
//!
//! Whoever feeds the stream ([`TensorStream::push`], then [`TensorStream::finish`]) runs beside
//! the loader, which awaits what it needs ([`TensorStream::header`], [`TensorStream::take`]): in a
//! web page, the download loop and the loading future share the page's one thread.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Poll, Waker};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo, GGUF_MAGIC};

/// The first attempt at the header after the magic; each failed one doubles it.
const FIRST_HEADER_TRY: u64 = 64 << 10;

/// The largest header a stream waits for. Real ones are a few MiB (the vocabulary is most of
/// them); a header announcing more is refused rather than buffered.
const MAX_HEADER_BYTES: u64 = 64 << 20;

/// A GGUF file arriving chunk by chunk; see the module's documentation. One caller waits on it
/// at a time (the loader, which awaits one group after another): it keeps one waker.
pub struct TensorStream {
    state: Mutex<State>,
}

struct State {
    file_len: u64,
    received: u64,
    /// The file's first bytes, until the header is parsed from them.
    prefix: Vec<u8>,
    /// Prefix length at which to try parsing the header next.
    next_try: u64,
    /// The parsed header, until the loader takes it.
    header: Option<GgufFile>,
    header_parsed: bool,
    data_offset: u64,
    /// Every tensor not yet taken, by start in the data section: its bytes so far.
    tensors: Vec<Arriving>,
    /// Why the stream failed (a bad header, a download cut short, a load that gave up); every
    /// wait ends with it.
    failed: Option<String>,
    /// Every byte has arrived: a wait that is not met by now never will be.
    ended: bool,
    waker: Option<Waker>,
    /// Tensor bytes held now, and the most held at once (for tests and reports).
    held: u64,
    peak_held: u64,
}

struct Arriving {
    start: u64,
    len: u64,
    bytes: Vec<u8>,
}

impl Arriving {
    fn complete(&self) -> bool {
        self.bytes.len() as u64 == self.len
    }
}

/// Tensors taken from a stream, by their start in the data section: what the loader uploads.
#[derive(Debug)]
pub struct HeldTensors(HashMap<u64, Vec<u8>>);

impl HeldTensors {
    /// The bytes of the tensor `info`, taken whole.
    pub fn into_bytes(mut self, info: &TensorInfo) -> Result<Vec<u8>> {
        self.0
            .remove(&info.offset)
            .filter(|b| b.len() as u64 == info.n_bytes)
            .ok_or_else(|| Error::Invalid(format!("tensor `{}` was not taken whole from the stream", info.name)))
    }

    /// The bytes of `info` (a tensor taken, or a part of one).
    pub fn bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        crate::gguf::held_range(&self.0, info)
            .ok_or_else(|| Error::Invalid(format!("tensor `{}` was not taken from the stream", info.name)))
    }
}

impl TensorStream {
    /// A stream of a file of `file_len` bytes (a download's Content-Length).
    pub fn new(file_len: u64) -> TensorStream {
        let state = State {
            file_len,
            received: 0,
            prefix: Vec::new(),
            next_try: GGUF_MAGIC.len() as u64,
            header: None,
            header_parsed: false,
            data_offset: 0,
            tensors: Vec::new(),
            failed: None,
            ended: false,
            waker: None,
            held: 0,
            peak_held: 0,
        };
        TensorStream { state: Mutex::new(state) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves bytes half-copied at worst; go on with them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next bytes of the file. An error (a file that is not GGUF, a bad header, more bytes
    /// than announced) ends the stream: the loader's waits end with it too.
    pub fn push(&self, chunk: &[u8]) -> Result<()> {
        let mut s = self.state();
        let pushed = s.push(chunk);
        if let Err(e) = &pushed {
            s.failed.get_or_insert_with(|| e.to_string());
        }
        s.wake();
        pushed
    }

    /// The file has ended: an error when bytes are missing (the loader's waits end with it).
    pub fn finish(&self) -> Result<()> {
        let mut s = self.state();
        let ended = match s.received < s.file_len {
            true => Err(Error::Invalid(format!("the file ended after {} of its {} bytes", s.received, s.file_len))),
            false => Ok(()),
        };
        if let Err(e) = &ended {
            s.failed.get_or_insert_with(|| e.to_string());
        }
        s.ended = true;
        s.wake();
        ended
    }

    /// Ends the stream with `why` (a download that failed, or a load that did): waits end with
    /// it, and so does every later push, so that a download stops there.
    pub fn fail(&self, why: &str) {
        let mut s = self.state();
        s.failed.get_or_insert_with(|| why.to_string());
        s.wake();
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.state().received
    }

    /// The most tensor bytes the stream has held at once.
    pub fn peak_held(&self) -> u64 {
        self.state().peak_held
    }

    /// The file's header, once it has arrived (taken once).
    pub async fn header(&self) -> Result<GgufFile> {
        poll_fn(|cx| {
            let mut s = self.state();
            if let Some(header) = s.header.take() {
                return Poll::Ready(Ok(header));
            }
            if let Some(why) = &s.failed {
                return Poll::Ready(Err(Error::Invalid(why.clone())));
            }
            if s.header_parsed {
                return Poll::Ready(Err(Error::Invalid("the header was already taken".into())));
            }
            if s.ended {
                return Poll::Ready(Err(Error::Invalid("the file ended before its header did".into())));
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The bytes of `infos` (tensors, or parts of them), once they have all arrived; the stream
    /// forgets them.
    pub async fn take(&self, infos: &[&TensorInfo]) -> Result<HeldTensors> {
        poll_fn(|cx| {
            let mut s = self.state();
            let wanted: Vec<usize> = match infos.iter().map(|info| s.index_of(info)).collect() {
                Ok(wanted) => wanted,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if wanted.iter().all(|&i| s.tensors[i].complete()) {
                return Poll::Ready(Ok(s.remove(wanted)));
            }
            if let Some(why) = &s.failed {
                return Poll::Ready(Err(Error::Invalid(why.clone())));
            }
            if s.ended {
                return Poll::Ready(Err(Error::Invalid("the file ended before its tensors did".into())));
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Forgets every tensor but those holding `infos` (tensors, or parts of them): what the
    /// loader will take. The others' bytes are then dropped as they arrive.
    pub fn retain(&self, infos: &[&TensorInfo]) -> Result<()> {
        let mut s = self.state();
        let mut keep = vec![false; s.tensors.len()];
        for info in infos {
            keep[s.index_of(info)?] = true;
        }
        let mut keep = keep.into_iter();
        let mut dropped = 0;
        s.tensors.retain(|t| {
            let kept = keep.next().unwrap_or(true);
            if !kept {
                dropped += t.bytes.len() as u64;
            }
            kept
        });
        s.held -= dropped;
        Ok(())
    }
}

impl State {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(Error::Invalid(why.clone()));
        }
        let at = self.received;
        if at + chunk.len() as u64 > self.file_len {
            return Err(Error::Invalid(format!("the file is longer than the {} bytes announced", self.file_len)));
        }
        self.received += chunk.len() as u64;
        if self.header_parsed {
            self.keep(at, chunk);
            return Ok(());
        }
        self.prefix.extend_from_slice(chunk);
        if (self.prefix.len() as u64) < self.next_try.min(self.file_len) {
            return Ok(());
        }
        let Some(header) = GgufFile::parse_header(&self.prefix, self.file_len)? else {
            if self.prefix.len() as u64 >= MAX_HEADER_BYTES {
                return Err(Error::Invalid(format!(
                    "the header goes on past {} MiB, more than any model's",
                    MAX_HEADER_BYTES >> 20
                )));
            }
            self.next_try = (self.next_try * 2).clamp(FIRST_HEADER_TRY, MAX_HEADER_BYTES);
            return Ok(());
        };
        self.data_offset = header.data_offset;
        self.tensors =
            header.tensors().iter().map(|t| Arriving { start: t.offset, len: t.n_bytes, bytes: Vec::new() }).collect();
        self.tensors.sort_by_key(|t| t.start);
        // The bookkeeping below needs disjoint tensors; a file whose tensors overlap is refused.
        if let Some(w) = self.tensors.windows(2).find(|w| w[0].start + w[0].len > w[1].start) {
            return Err(Error::Gguf {
                offset: self.data_offset + w[1].start,
                msg: format!("tensors overlap at data offset {}", w[1].start),
            });
        }
        self.header = Some(header);
        self.header_parsed = true;
        // The prefix's bytes past the header are the first tensors'.
        let prefix = std::mem::take(&mut self.prefix);
        self.keep(0, &prefix);
        Ok(())
    }

    /// Copies what `chunk`, which starts at byte `at` of the file, holds of tensors not yet taken.
    fn keep(&mut self, at: u64, chunk: &[u8]) {
        let (from, to) =
            (at.saturating_sub(self.data_offset), (at + chunk.len() as u64).saturating_sub(self.data_offset));
        // Tensors are sorted and disjoint: those overlapping [from, to) are a run.
        let first = self.tensors.partition_point(|t| t.start + t.len <= from);
        for t in &mut self.tensors[first..] {
            if t.start >= to {
                break;
            }
            let (lo, hi) = (t.start.max(from), (t.start + t.len).min(to));
            if lo < hi {
                let src = &chunk[(lo + self.data_offset - at) as usize..(hi + self.data_offset - at) as usize];
                if t.bytes.is_empty() {
                    t.bytes.reserve_exact(t.len as usize);
                }
                t.bytes.extend_from_slice(src);
                self.held += hi - lo;
            }
        }
        self.peak_held = self.peak_held.max(self.held);
    }

    /// The index of the tensor that holds `info` (a tensor, or a part of one).
    fn index_of(&self, info: &TensorInfo) -> Result<usize> {
        let i = self.tensors.partition_point(|t| t.start <= info.offset);
        match i.checked_sub(1).map(|i| (i, &self.tensors[i])) {
            Some((i, t)) if info.offset + info.n_bytes <= t.start + t.len => Ok(i),
            _ => Err(Error::Invalid(format!("tensor `{}` is not in the stream (or was taken already)", info.name))),
        }
    }

    fn remove(&mut self, mut wanted: Vec<usize>) -> HeldTensors {
        wanted.sort_unstable();
        wanted.dedup();
        let mut held = HashMap::with_capacity(wanted.len());
        for i in wanted.into_iter().rev() {
            let t = self.tensors.remove(i);
            self.held -= t.len;
            held.insert(t.start, t.bytes);
        }
        HeldTensors(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::now;

    const TINY: &[u8] = include_bytes!("../../tests/data/tiny/phi3.gguf");

    /// The future's output if it is ready at its first poll.
    fn ready<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut std::task::Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    }

    /// Every chunking gives the header and every tensor's bytes as the whole file has them, and a
    /// tensor is not handed out before its last byte has arrived.
    #[test]
    fn any_chunking_gives_the_files_header_and_tensors() {
        let whole = GgufFile::from_bytes(TINY.to_vec()).unwrap();
        for chunk in [1, 7, 4096, TINY.len()] {
            let stream = TensorStream::new(TINY.len() as u64);
            let (first, rest) = TINY.split_at(TINY.len() / 2);
            for c in first.chunks(chunk) {
                stream.push(c).unwrap();
            }
            let header = now(stream.header()).unwrap();
            assert_eq!(header.tensors(), whole.tensors());
            assert_eq!(header.file_size(), TINY.len() as u64);
            let last = whole.tensors().iter().max_by_key(|t| t.offset).unwrap();
            assert!(ready(stream.take(&[last])).is_none(), "chunk {chunk}: handed out before it arrived");
            for c in rest.chunks(chunk) {
                stream.push(c).unwrap();
            }
            stream.finish().unwrap();
            for t in whole.tensors() {
                let held = now(stream.take(&[t])).unwrap();
                assert_eq!(held.bytes(t).unwrap(), whole.tensor_data(t), "chunk {chunk}: {}", t.name);
            }
            assert!(stream.peak_held() <= TINY.len() as u64);
        }
    }

    /// Tensors the loader will not take are dropped as they arrive.
    #[test]
    fn only_retained_tensors_are_kept() {
        let whole = GgufFile::from_bytes(TINY.to_vec()).unwrap();
        let stream = TensorStream::new(TINY.len() as u64);
        let (first, rest) = TINY.split_at(whole.data_offset as usize + 1);
        stream.push(first).unwrap();
        let kept = whole.tensors().iter().max_by_key(|t| t.n_bytes).unwrap();
        stream.retain(&[kept]).unwrap();
        for c in rest.chunks(4096) {
            stream.push(c).unwrap();
        }
        stream.finish().unwrap();
        assert!(stream.peak_held() <= kept.n_bytes + 4096, "held {}", stream.peak_held());
        assert_eq!(now(stream.take(&[kept])).unwrap().bytes(kept).unwrap(), whole.tensor_data(kept));
        let other = whole.tensors().iter().find(|t| t.name != kept.name).unwrap();
        assert!(now(stream.take(&[other])).unwrap_err().to_string().contains("not in the stream"));
    }

    /// A header parses from a prefix once the prefix holds all of it, and never before; mangled
    /// prefixes give errors, never panics.
    #[test]
    fn headers_parse_from_prefixes_once_complete() {
        let whole = GgufFile::from_bytes(TINY.to_vec()).unwrap();
        let end = whole.data_offset as usize;
        let len = TINY.len() as u64;
        let mut complete_from = None;
        for n in (0..=end).step_by(53).chain([end]) {
            match GgufFile::parse_header(&TINY[..n], len).unwrap() {
                Some(header) => {
                    assert_eq!(header.tensors(), whole.tensors());
                    complete_from.get_or_insert(n);
                }
                None => assert!(complete_from.is_none(), "{n} bytes: incomplete after being complete"),
            }
        }
        assert!(complete_from.is_some_and(|n| n > 24));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut prefix = TINY[..end].to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                prefix[(seed % end as u64) as usize] = (seed >> 32) as u8;
            }
            let _ = GgufFile::parse_header(&prefix[..(seed >> 40) as usize % end], len);
        }
    }

    /// A header whose array claims 3 billion elements of a file announced as 4 GB parses as
    /// "not complete yet" without reserving room for them.
    #[test]
    fn huge_counts_in_a_prefix_reserve_nothing() {
        let mut header = b"GGUF".to_vec();
        header.extend(3u32.to_le_bytes()); // version
        header.extend(0u64.to_le_bytes()); // tensors
        header.extend(1u64.to_le_bytes()); // metadata
        header.extend(1u64.to_le_bytes());
        header.push(b'a');
        header.extend(9u32.to_le_bytes()); // array
        header.extend(0u32.to_le_bytes()); // of u8
        header.extend(3_000_000_000u64.to_le_bytes());
        header.extend([0; 100]);
        assert!(GgufFile::parse_header(&header, 4_000_000_000).unwrap().is_none());
    }

    /// Bytes that are not GGUF, more bytes than announced, or fewer, end the stream with an error
    /// that every wait then returns.
    #[test]
    fn bad_streams_end_every_wait_with_their_error() {
        let stream = TensorStream::new(100);
        let err = stream.push(b"<!doctype html>").unwrap_err().to_string();
        assert!(err.contains("not a GGUF file"), "{err}");
        assert!(now(stream.header()).unwrap_err().to_string().contains("not a GGUF file"));

        let stream = TensorStream::new(10);
        assert!(stream.push(&TINY[..11]).unwrap_err().to_string().contains("longer than the 10 bytes"));

        // A stream that ends before a wait can be met ends the wait.
        let stream = TensorStream::new(0);
        stream.finish().unwrap();
        assert!(now(stream.header()).unwrap_err().to_string().contains("ended before its header"));

        // A load that gives up fails the stream: the download's next push says why.
        let stream = TensorStream::new(TINY.len() as u64);
        stream.push(&TINY[..100]).unwrap();
        stream.fail("the model does not fit");
        assert!(stream.push(&TINY[100..200]).unwrap_err().to_string().contains("does not fit"));

        let stream = TensorStream::new(TINY.len() as u64);
        stream.push(&TINY[..TINY.len() - 1]).unwrap();
        let err = stream.finish().unwrap_err().to_string();
        assert!(err.contains("ended after"), "{err}");
        let header = now(stream.header());
        let last = GgufFile::from_bytes(TINY.to_vec()).unwrap().tensors().iter().max_by_key(|t| t.offset).cloned();
        assert!(header.is_ok(), "the header had arrived");
        assert!(now(stream.take(&[&last.unwrap()])).unwrap_err().to_string().contains("ended after"));
    }
}
