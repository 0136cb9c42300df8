//! Quantized CPU tensors that stay in a memory-mapped GGUF file instead of being copied out of it.
//!
//! Patched in by agent (vendor/README.md). Reading a 1 GB model into fresh memory costs the
//! first load in a process more than a second on a small VM (the kernel zeroes every new page
//! before the copy lands in it); llama.cpp maps the file and computes on its pages, so its load is
//! the header alone, and two processes with the same model share one copy of it in the page cache.
//! This does the same for candle's CPU kernels: [`MappedBlocks`] is a `QuantizedType` over a slice
//! of a private (copy-on-write) mapping.
//!
//! What it must never do: hand out a slice outside the mapping, or one misaligned for its block
//! type ([`tensor_from_map`] checks both and copies a misaligned tensor instead). A file truncated
//! by another process while mapped ends this one with SIGBUS, as it does llama.cpp; a model file
//! replaced by renaming (what scripts/setup.sh does) is not affected.

use super::{k_quants, GgmlDType, QStorage, QTensor, QuantizedType};
use crate::{CpuStorage, Result};
use half::f16;
use std::marker::PhantomData;
use std::sync::Arc;

/// A whole GGUF file mapped privately: its pages are the page cache's until something writes to
/// them (nothing does while a model runs; `from_float` would, into a private copy).
pub struct MappedFile {
    map: memmap2::MmapMut,
    /// The mapping's first byte, taken while `map` was held mutably (the one pointer every
    /// tensor's blocks are derived from).
    base: *mut u8,
}

// SAFETY: `base` points into `map`, owned alongside it; the tensors over it synchronise as
// `MappedBlocks` says.
unsafe impl Send for MappedFile {}
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps `file` (the whole of it) copy-on-write.
    pub fn new(file: &std::fs::File) -> Result<Arc<Self>> {
        // SAFETY: see the module comment: the mapping is private, so nothing this process does
        // changes the file; another process truncating it is the documented hazard.
        let mut map = unsafe { memmap2::MmapOptions::new().map_copy(file)? };
        let base = map.as_mut_ptr();
        Ok(Arc::new(Self { map, base }))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// `len` blocks of type `T` at byte `start` of a mapped file.
pub struct MappedBlocks<T> {
    /// Keeps the mapping alive while the tensor exists.
    _file: Arc<MappedFile>,
    ptr: *mut T,
    len: usize,
    _blocks: PhantomData<T>,
}

// SAFETY: the blocks are plain data; shared access only reads them, and `&mut self` (the only
// way to write) is exclusive for this tensor's range, which no other `MappedBlocks` overlaps
// (`tensor_from_map` creates one per tensor of the file's index).
unsafe impl<T: Send> Send for MappedBlocks<T> {}
unsafe impl<T: Sync> Sync for MappedBlocks<T> {}

impl<T> MappedBlocks<T> {
    fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` is aligned for `T` and `len` blocks lie inside the mapping (checked in
        // `tensor_from_map`), which `file` keeps alive.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above; the mapping is writable (private), and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: k_quants::GgmlType + Send + Sync> QuantizedType for MappedBlocks<T> {
    fn dtype(&self) -> GgmlDType {
        T::DTYPE
    }

    fn matmul_t(&self, mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) -> Result<()> {
        k_quants::matmul(mkn, lhs, self.as_slice(), dst)
    }

    fn matmul_t_f16(&self, mkn: (usize, usize, usize), lhs: &[f16], dst: &mut [f16]) -> Result<()> {
        k_quants::matmul_f16(mkn, lhs, self.as_slice(), dst)
    }

    fn dequantize(&self, elem_count: usize) -> Result<CpuStorage> {
        let mut ys = vec![0.0f32; elem_count];
        T::to_float(self.as_slice(), &mut ys);
        Ok(CpuStorage::F32(ys))
    }

    fn storage_size_in_bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    fn as_ptr(&self) -> *const u8 {
        self.ptr as *const u8
    }

    fn block_size(&self) -> usize {
        T::BLCK_SIZE
    }

    fn from_float(&mut self, xs: &[f32]) {
        T::from_float(xs, self.as_mut_slice())
    }

    fn from_float_imatrix(&mut self, xs: &[f32], imatrix_weights: &[f32], n_per_row: usize) {
        T::from_float_imatrix(xs, self.as_mut_slice(), imatrix_weights, n_per_row)
    }

    fn size(&self) -> usize {
        self.storage_size_in_bytes()
    }
}

/// The tensor of `dims` and `ggml_dtype` whose data starts at byte `start` of `file`, computed on
/// in place. A range outside the file is an error (a damaged or hostile file); a start that is not
/// aligned for the block type (GGUF aligns tensor data to 32 bytes, so only an unusual file) is
/// copied out instead.
pub fn tensor_from_map(
    file: &Arc<MappedFile>,
    start: usize,
    ggml_dtype: GgmlDType,
    dims: Vec<usize>,
) -> Result<QTensor> {
    // A damaged or hostile index may give dimensions whose product overflows.
    let Some(elems) = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
        crate::bail!("tensor dimensions {dims:?} are too large")
    };
    let block_size = ggml_dtype.block_size();
    if elems % block_size != 0 {
        crate::bail!(
            "the number of elements {elems} is not divisible by the block size {block_size}"
        )
    }
    let n_blocks = elems / block_size;
    let bytes = n_blocks.checked_mul(ggml_dtype.type_size());
    let end = bytes
        .and_then(|bytes| start.checked_add(bytes))
        .filter(|&end| end <= file.len());
    let bytes = bytes.unwrap_or(usize::MAX);
    let Some(end) = end else {
        crate::bail!(
            "tensor data at bytes {start}..+{bytes} lies outside the {}-byte file",
            file.len()
        )
    };
    let mut mapped = Mapping {
        file,
        start,
        n_blocks,
        dims,
    };
    let in_place = super::ggml_file::with_block_type!(ggml_dtype, in_place(&mut mapped));
    match in_place? {
        Some(tensor) => Ok(tensor),
        // Copied into a vector of blocks (aligned), not reinterpreted in place.
        None => {
            super::ggml_file::qtensor_read_cpu(ggml_dtype, &mut &file.map[start..end], mapped.dims)
        }
    }
}

/// What `in_place` needs, in one argument for the block-type dispatch.
struct Mapping<'a> {
    file: &'a Arc<MappedFile>,
    start: usize,
    n_blocks: usize,
    dims: Vec<usize>,
}

/// The tensor over the mapping, or `None` when its start is misaligned for `T`.
fn in_place<T: k_quants::GgmlType + Send + Sync + 'static>(
    mapped: &mut Mapping<'_>,
) -> Result<Option<QTensor>> {
    // SAFETY: `start` is within the mapping (checked by the caller).
    let ptr = unsafe { mapped.file.base.add(mapped.start) };
    if (ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Ok(None);
    }
    let blocks = MappedBlocks::<T> {
        _file: Arc::clone(mapped.file),
        ptr: ptr as *mut T,
        len: mapped.n_blocks,
        _blocks: PhantomData,
    };
    let dims = std::mem::take(&mut mapped.dims);
    QTensor::new(QStorage::Cpu(Box::new(blocks)), dims).map(Some)
}
