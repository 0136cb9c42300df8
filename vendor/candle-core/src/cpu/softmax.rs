//! Patched in by agent (vendor/README.md): a row softmax for f32 on the CPU with an `exp` the
//! compiler vectorises. mistral.rs's CPU prompt attention uses it (scores minus the row maximum are
//! never positive, which is all `exp_nonpositive` handles).

/// Softmax of one row in place. A fully masked row (all -inf) becomes all 0 instead of NaN.
pub fn softmax_in_place(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        xs.fill(0.0);
        return;
    }
    let mut sum = 0f32;
    for chunk in xs.chunks_mut(8) {
        let mut lanes = [0f32; 8];
        for (lane, x) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *x = exp_nonpositive(*x - max);
            *lane = *x;
        }
        sum += lanes.iter().sum::<f32>();
    }
    let inv = 1.0 / sum;
    xs.iter_mut().for_each(|x| *x *= inv);
}

/// `e^x` for `x <= 0`, written so LLVM vectorises it: `e^x = 2^n * e^r` with
/// `n = floor(x log2(e) + 1/2)`, `r = x - n ln 2` (ln 2 split in two parts so `r` is exact enough)
/// and a degree-7 Taylor polynomial for `e^r`, `|r| <= ln(2)/2` (relative error under 1e-6 over the
/// whole range, like libm's `expf`). Below -87 (and for -inf) it returns 0, where `expf` is
/// subnormal or 0. NaN stays NaN.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const C: [f32; 8] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    let xc = x.max(-87.0);
    let n = (xc * std::f32::consts::LOG2_E + 0.5).floor();
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = C[0]
        + r * (C[1] + r * (C[2] + r * (C[3] + r * (C[4] + r * (C[5] + r * (C[6] + r * C[7]))))));
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        p * scale
    }
}
