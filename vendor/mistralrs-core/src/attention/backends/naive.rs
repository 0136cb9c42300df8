#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use crate::MemoryUsage;

use candle_core::{Device, Result, Tensor};
use mistralrs_quant::MatMul;

use crate::attention::{chunked_attention, SdpaParams};

/// Not *really* sure why this is necessary but it is.
pub(crate) fn maybe_synchronize(device: &Device) -> Result<()> {
    // If less that 4 GB available, synchronize
    #[cfg(target_pointer_width = "64")]
    const FOUR_GIB: usize = 4 * 1024 * 1024 * 1024;
    #[cfg(not(target_pointer_width = "64"))]
    const FOUR_GIB: usize = usize::MAX;
    // Patched in by agent (vendor/README.md): synchronising a CPU device does nothing, but asking
    // for the available memory built a `sysinfo::System::new_all()`, which reads /proc for every
    // process on the machine, on every attention call (each layer of each prompt step): 16% of CPU
    // prompt time.
    if device.is_cpu() {
        return Ok(());
    }
    if MemoryUsage.get_memory_available(device)? < FOUR_GIB {
        device.synchronize()?;
    }
    Ok(())
}

/// Computes softmax(QK^T*sqrt(d_k))V
pub(crate) fn naive_sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    sdpa_params: &SdpaParams,
) -> Result<Tensor> {
    maybe_synchronize(q.device())?;

    // Use chunked attention with a closure that captures the necessary parameters
    chunked_attention(q, k, v, mask, |q_chunk, k, v, mask_chunk| {
        // Patched in by agent (vendor/README.md): on the CPU in f32, scale the (small) query chunk
        // instead of the (large) score matrix, and mask + softmax in one pass (`cpu_masked_softmax`).
        if sdpa_params.softcap.is_none()
            && q_chunk.device().is_cpu()
            && q_chunk.dtype() == candle_core::DType::F32
        {
            // In f32: `MatMul` would convert both sides to f16 (see `cpu_grouped_sdpa`).
            let q_scaled = (q_chunk * f64::from(sdpa_params.softmax_scale))?;
            let att = q_scaled.matmul(&k.t()?)?;
            if let Some(probs) = cpu_masked_softmax(&att, mask_chunk)? {
                return probs.matmul(v);
            }
            let att = match mask_chunk {
                Some(mask) => att.broadcast_add(mask)?,
                None => att,
            };
            return candle_nn::ops::softmax_last_dim(&att)?.matmul(v);
        }

        let mut att =
            MatMul.matmul_affine_mul(q_chunk, &k.t()?, sdpa_params.softmax_scale.into())?;

        if let Some(softcap) = sdpa_params.softcap {
            att = (att / softcap as f64)?;
            att = att.tanh()?;
            att = (att * softcap as f64)?;
        }

        if let Some(mask) = mask_chunk {
            att = att.broadcast_add(mask)?;
        }

        att = candle_nn::ops::softmax_last_dim(&att)?;
        MatMul.matmul(&att, v)
    })
}

/// Patched in by agent (vendor/README.md): `softmax(att + mask)` over the last dimension for
/// contiguous f32 scores on the CPU, in one pass per row with a vectorisable `exp`. The generic path
/// allocates a masked copy and then a softmax copy of the score matrix and calls libm's scalar
/// `expf` for every element; after a prefix-cache hit (hundreds of new queries against thousands of
/// cached keys, per head and layer) that was a large part of an agent turn's first-token time.
/// `None` when the inputs are not of the kind handled here (then the generic path runs).
fn cpu_masked_softmax(att: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
    if !att.device().is_cpu() || att.dtype() != candle_core::DType::F32 || att.rank() < 2 {
        return Ok(None);
    }
    let dims = att.dims().to_vec();
    let (q_len, kv_len) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let Some(mask) = shared_mask(mask, q_len, kv_len)? else {
        return Ok(None);
    };
    if kv_len == 0 {
        return Ok(None);
    }
    let probs = masked_softmax_rows(att, mask.as_deref(), q_len, kv_len)?;
    Ok(Some(Tensor::from_vec(probs, dims, att.device())?))
}

/// One `(q_len, kv_len)` f32 mask shared by every batch and head, as the causal masker builds it:
/// `Some(None)` without a mask, `None` for a mask of another kind.
#[allow(clippy::option_option)]
fn shared_mask(
    mask: Option<&Tensor>,
    q_len: usize,
    kv_len: usize,
) -> Result<Option<Option<Vec<f32>>>> {
    match mask {
        None => Ok(Some(None)),
        Some(m)
            if m.dtype() == candle_core::DType::F32
                && m.elem_count() == q_len * kv_len
                && m.dims().last() == Some(&kv_len) =>
        {
            Ok(Some(Some(m.flatten_all()?.to_vec1::<f32>()?)))
        }
        Some(_) => Ok(None),
    }
}

/// The rows of `att` (contiguous f32 scores, `kv_len` to a row) plus the mask row of each (row
/// `r` of every block of `q_len` rows takes mask row `r`), softmaxed, as a new buffer.
fn masked_softmax_rows(
    att: &Tensor,
    mask: Option<&[f32]>,
    q_len: usize,
    kv_len: usize,
) -> Result<Vec<f32>> {
    use rayon::prelude::*;

    let mut data = att.flatten_all()?.to_vec1::<f32>()?;
    data.par_chunks_mut(kv_len)
        .enumerate()
        .for_each(|(row, xs)| {
            if let Some(mask) = mask {
                let m = &mask[(row % q_len) * kv_len..][..kv_len];
                xs.iter_mut().zip(m).for_each(|(x, m)| *x += m);
            }
            candle_core::cpu::softmax::softmax_in_place(xs);
        });
    Ok(data)
}

/// Patched in by agent (vendor/README.md): prompt attention on the CPU in f32 without copying the
/// key/value heads out to every query head (grouped-query attention). The query heads that share a
/// KV head are stacked into one matrix — `(b, kv_heads * rep, q, d)` read as
/// `(b, kv_heads, rep * q, d)`, the same bytes — so each query chunk multiplies every KV head's keys
/// once, in f32 (`mistralrs_quant::MatMul` converts both sides to f16 on the CPU: a strided scalar
/// conversion of all the cached keys and values for every query chunk, which grew with the
/// conversation and made a long agent turn's first token several times slower than llama.cpp's,
/// and it rounded the scores to f16). `None` where this does not apply (not the CPU, not f32,
/// softcapping, head counts that do not group, a mask of another kind).
pub(crate) fn cpu_grouped_sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    sdpa_params: &SdpaParams,
) -> Result<Option<Tensor>> {
    let f32_on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if sdpa_params.softcap.is_some() || ![q, k, v].into_iter().all(f32_on_cpu) {
        return Ok(None);
    }
    let (b_sz, heads, q_len, head_dim) = q.dims4()?;
    let (_, kv_heads, kv_len, _) = k.dims4()?;
    let v_dim = v.dim(3)?;
    if kv_heads == 0 || heads % kv_heads != 0 || kv_len == 0 || q_len == 0 {
        return Ok(None);
    }
    let Some(mask) = shared_mask(mask, q_len, kv_len)? else {
        return Ok(None);
    };
    let rep = heads / kv_heads;
    let k_t = k.contiguous()?.t()?;
    let v = v.contiguous()?;
    let chunk = crate::attention::cpu_chunk_size(b_sz * heads, kv_len);
    let mut outputs = Vec::with_capacity(q_len.div_ceil(chunk));
    for start in (0..q_len).step_by(chunk) {
        let len = chunk.min(q_len - start);
        // The affine op writes a new contiguous tensor, so the reshape is free.
        let q_chunk = (q.narrow(2, start, len)? * f64::from(sdpa_params.softmax_scale))?
            .reshape((b_sz, kv_heads, rep * len, head_dim))?;
        let att = q_chunk.matmul(&k_t)?;
        let mask_rows = mask
            .as_deref()
            .map(|m| &m[start * kv_len..(start + len) * kv_len]);
        let probs = masked_softmax_rows(&att, mask_rows, len, kv_len)?;
        let probs = Tensor::from_vec(probs, att.dims(), att.device())?;
        outputs.push(probs.matmul(&v)?.reshape((b_sz, heads, len, v_dim))?);
    }
    Ok(Some(Tensor::cat(&outputs, 2)?))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Result, Tensor, D};

    use super::cpu_grouped_sdpa;
    use crate::attention::SdpaParams;

    /// softmax(q·kᵀ·scale + mask)·v in f64, each KV head repeated for the query heads it serves.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
        let rep = q.dim(1)? / k.dim(1)?;
        let repeat = |t: &Tensor| -> Result<Tensor> {
            let heads: Vec<Tensor> = (0..t.dim(1)?)
                .flat_map(|h| std::iter::repeat_n(h, rep))
                .map(|h| t.narrow(1, h, 1))
                .collect::<Result<_>>()?;
            Tensor::cat(&heads, 1)?.to_dtype(DType::F64)
        };
        let (k, v) = (repeat(k)?, repeat(v)?);
        let scores = (q.to_dtype(DType::F64)?.matmul(&k.t()?)? * scale)?
            .broadcast_add(&mask.to_dtype(DType::F64)?)?;
        let exp = scores
            .broadcast_sub(&scores.max_keepdim(D::Minus1)?)?
            .exp()?;
        let probs = exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)?;
        probs.matmul(&v)
    }

    #[test]
    fn grouped_prompt_attention_matches_repeated_heads_in_f64() -> Result<()> {
        // Qwen2.5-Coder's grouping (12 query heads on 2 KV heads); 300 new queries after 1,800
        // cached positions, more than one query chunk; keys and values as a narrowed view of a
        // longer buffer, as the KV cache hands them over.
        let dev = Device::Cpu;
        let (heads, kv_heads, dim, cached, new) = (12, 2, 16, 1800, 300);
        let kv_len = cached + new;
        assert!(crate::attention::cpu_chunk_size(heads, kv_len) < new);
        let q = Tensor::randn(0f32, 1.0, (1, heads, new, dim), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, kv_heads, kv_len + 64, dim), &dev)?
            .narrow(2, 0, kv_len)?;
        let v = Tensor::randn(0f32, 1.0, (1, kv_heads, kv_len + 64, dim), &dev)?
            .narrow(2, 0, kv_len)?;
        let mask: Vec<f32> = (0..new)
            .flat_map(|i| {
                (0..kv_len).map(move |j| {
                    if j <= cached + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (new, kv_len), &dev)?;
        let scale = 1.0 / (dim as f32).sqrt();
        let params = SdpaParams {
            n_kv_groups: heads / kv_heads,
            softcap: None,
            softmax_scale: scale,
            sliding_window: None,
            sinks: None,
        };
        let ours = cpu_grouped_sdpa(&q, &k, &v, Some(&mask), &params)?
            .expect("f32 on the CPU with a causal mask takes the grouped path");
        assert_eq!(ours.dims(), &[1, heads, new, dim]);
        let expected = reference(&q, &k, &v, &mask, f64::from(scale))?;
        let worst = (ours.to_dtype(DType::F64)? - expected)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?;
        assert!(
            worst < 1e-5,
            "largest difference from the f64 reference: {worst:e}"
        );
        Ok(())
    }
}
