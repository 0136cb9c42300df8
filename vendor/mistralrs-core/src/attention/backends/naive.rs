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
            let q_scaled = (q_chunk * f64::from(sdpa_params.softmax_scale))?;
            let att = MatMul.matmul(&q_scaled, &k.t()?)?;
            if let Some(probs) = cpu_masked_softmax(&att, mask_chunk)? {
                return MatMul.matmul(&probs, v);
            }
            let att = match mask_chunk {
                Some(mask) => att.broadcast_add(mask)?,
                None => att,
            };
            return MatMul.matmul(&candle_nn::ops::softmax_last_dim(&att)?, v);
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
    use rayon::prelude::*;

    if !att.device().is_cpu() || att.dtype() != candle_core::DType::F32 || att.rank() < 2 {
        return Ok(None);
    }
    let dims = att.dims().to_vec();
    let (q_len, kv_len) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    // One (q_len, kv_len) mask shared by every batch and head, as the causal masker builds it.
    let mask = match mask {
        None => None,
        Some(m)
            if m.dtype() == candle_core::DType::F32
                && m.elem_count() == q_len * kv_len
                && m.dims().last() == Some(&kv_len) =>
        {
            Some(m.flatten_all()?.to_vec1::<f32>()?)
        }
        Some(_) => return Ok(None),
    };
    let mut data = att.flatten_all()?.to_vec1::<f32>()?;
    if kv_len == 0 {
        return Ok(None);
    }
    data.par_chunks_mut(kv_len)
        .enumerate()
        .for_each(|(row, xs)| {
            if let Some(mask) = &mask {
                let m = &mask[(row % q_len) * kv_len..][..kv_len];
                xs.iter_mut().zip(m).for_each(|(x, m)| *x += m);
            }
            candle_core::cpu::softmax::softmax_in_place(xs);
        });
    Ok(Some(Tensor::from_vec(data, dims, att.device())?))
}
