//! Patched in by agent (vendor/README.md): a GGUF model's token-embedding table kept quantized on
//! the CPU, each forward dequantizing only the rows of the token ids it is given (llama.cpp's
//! `get_rows`). The release dequantized the whole table to f32 at load: for Qwen2.5-Coder-1.5B,
//! 151,936 × 1,536 values, ~0.9 GB of memory and about a second of load time, to read one row per
//! token. On other devices the dequantized table stays (reading rows back from device memory per
//! forward would cost more than it saves).

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Embedding, Module};

pub enum TokenEmbedding {
    Dequantized(Embedding),
    Quantized { table: Arc<QTensor>, hidden: usize },
}

impl TokenEmbedding {
    /// `table`: (vocabulary, hidden), as in a GGUF `token_embd.weight`.
    pub fn new(table: Arc<QTensor>, hidden: usize, device: &Device) -> Result<Self> {
        let (_, cols) = table.shape().dims2()?;
        let block = table.dtype().block_size();
        if device.is_cpu() && block > 1 && cols == hidden && hidden.is_multiple_of(block) {
            return Ok(Self::Quantized { table, hidden });
        }
        Ok(Self::Dequantized(Embedding::new(
            table.dequantize(device)?,
            hidden,
        )))
    }
}

impl Module for TokenEmbedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (table, hidden) = match self {
            Self::Dequantized(embedding) => return embedding.forward(ids),
            Self::Quantized { table, hidden } => (table, *hidden),
        };
        let dtype = table.dtype();
        let row_bytes = hidden / dtype.block_size() * dtype.type_size();
        let rows = table.shape().dims2()?.0;
        let data = table.data()?;
        let ids_flat = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let mut out = Vec::with_capacity(ids_flat.len());
        for id in ids_flat {
            let id = id as usize;
            if id >= rows {
                candle_core::bail!("token id {id} is outside the embedding table ({rows} rows)");
            }
            let row = &data[id * row_bytes..(id + 1) * row_bytes];
            let storage = QStorage::from_data(Cow::Borrowed(row), &Device::Cpu, dtype)?;
            out.push(QTensor::new(storage, (hidden,))?.dequantize(&Device::Cpu)?);
        }
        let mut dims = ids.dims().to_vec();
        dims.push(hidden);
        Tensor::stack(&out, 0)?.reshape(dims)
    }
}
