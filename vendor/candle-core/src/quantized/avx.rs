use super::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0, BlockQ8_1, QK8_0, QK8_1, QK_K,
};
use byteorder::{ByteOrder, LittleEndian};
use half::f16;

#[cfg(target_arch = "x86")]
use core::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

#[inline(always)]
pub(crate) unsafe fn sum_i16_pairs_float(x: __m256i) -> __m256 {
    let ones = _mm256_set1_epi16(1);
    let summed_pairs = _mm256_madd_epi16(ones, x);
    _mm256_cvtepi32_ps(summed_pairs)
}

#[inline(always)]
pub(crate) unsafe fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    // Patched in by agent (vendor/README.md): where the CPU has VNNI, one `vpdpbusd` does the
    // u8 x i8 multiply and the sums of four in one instruction (as ggml does); it also cannot
    // saturate, unlike the 16-bit intermediate of `maddubs`.
    #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy));
    #[cfg(all(
        target_feature = "avxvnni",
        not(all(target_feature = "avx512vnni", target_feature = "avx512vl"))
    ))]
    return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sy));
    #[allow(unreachable_code)]
    {
        let dot = _mm256_maddubs_epi16(ax, sy);
        sum_i16_pairs_float(dot)
    }
}

/// Patched in by agent (vendor/README.md): `acc + madd(a, b)` (i16 pairs multiplied and summed
/// into i32 lanes); one `vpdpwssd` where the CPU has VNNI. Exact either way: the kernels' products
/// never reach the i32 range.
#[inline(always)]
unsafe fn madd_acc_epi16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
    return _mm256_dpwssd_epi32(acc, a, b);
    #[cfg(all(
        target_feature = "avxvnni",
        not(all(target_feature = "avx512vnni", target_feature = "avx512vl"))
    ))]
    return _mm256_dpwssd_avx_epi32(acc, a, b);
    #[allow(unreachable_code)]
    _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
}

#[inline(always)]
pub(crate) unsafe fn hsum_float_8(x: __m256) -> f32 {
    let res = _mm256_extractf128_ps(x, 1);
    let res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    let res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

#[inline(always)]
pub(crate) unsafe fn bytes_from_nibbles_32(rsi: *const u8) -> __m256i {
    let tmp = _mm_loadu_si128(rsi as *const __m128i);
    let bytes = _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4));
    let low_mask = _mm256_set1_epi8(0xF);
    _mm256_and_si256(low_mask, bytes)
}

#[inline(always)]
pub(crate) unsafe fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    mul_sum_us8_pairs_float(ax, sy)
}

#[inline(always)]
pub(crate) fn vec_dot_q4_0_q8_0(n: usize, xs: &[BlockQ4_0], ys: &[BlockQ8_0]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK8_0),
        "vec_dot_q4_0_q8_0: {n} is not divisible by {QK8_0}"
    );
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for (x, y) in xs.iter().zip(ys.iter()) {
            let d = _mm256_set1_ps(f16::to_f32(x.d) * f16::to_f32(y.d));
            let bx = bytes_from_nibbles_32(x.qs.as_ptr());
            let off = _mm256_set1_epi8(8);
            let bx = _mm256_sub_epi8(bx, off);
            let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            let q = mul_sum_i8_pairs_float(bx, by);
            acc = _mm256_fmadd_ps(d, q, acc);
        }
        hsum_float_8(acc)
    }
}

/// Patched in by agent (vendor/README.md): bytes of 0xFF where the fifth bit of that value of a
/// Q5_0/Q5_1 block is set, else 0.
#[inline(always)]
unsafe fn fifth_bits(qh: [u8; 4]) -> __m256i {
    // Byte b of the vector holds byte b / 8 of qh; OR-ing every bit but b % 8 leaves 0xFF exactly
    // where bit b of qh is set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(u32::from_le_bytes(qh) as i32),
        _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1))
}

// Patched in by agent (vendor/README.md): candle 0.10.2 had no SIMD path for Q5_0 either (the
// scalar `vec_dot_unopt` ran), though llama.cpp's K-quant mixes use Q5_0 for every tensor whose rows
// are not a multiple of 256 (most of a small model's "Q4_K_M" file) and some files are mostly Q5_0.
// Same scheme as ggml's AVX2 `ggml_vec_dot_q5_0_q8_0`: the fifth bits become bytes of 0 or 0xF0
// (the -16 offset folded in), OR-ed onto the nibbles, giving the signed quants directly.
#[inline(always)]
unsafe fn q5_0_quants(x: &BlockQ5_0) -> __m256i {
    let nibbles = bytes_from_nibbles_32(x.qs.as_ptr());
    _mm256_or_si256(
        nibbles,
        _mm256_andnot_si256(fifth_bits(x.qh), _mm256_set1_epi8(0xF0u8 as i8)),
    )
}

/// Patched in by agent (vendor/README.md): one Q5_0 row against `R` Q8_0 rows (1 for decode, 4 for
/// a prompt tile), each weight block unpacked once; every row's result is the same as with R = 1.
#[inline(always)]
pub(crate) fn vec_dot_q5_0_q8_0_rows<const R: usize>(
    n: usize,
    xs: &[BlockQ5_0],
    ys: [&[BlockQ8_0]; R],
) -> [f32; R] {
    debug_assert!(
        n.is_multiple_of(QK8_0),
        "vec_dot_q5_0_q8_0: {n} is not divisible by {QK8_0}"
    );
    let nb = xs.len().min(ys.iter().map(|y| y.len()).min().unwrap_or(0));
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        for i in 0..nb {
            let x = xs.get_unchecked(i);
            let (xd, bx) = (f16::to_f32(x.d), q5_0_quants(x));
            for r in 0..R {
                let y = ys[r].get_unchecked(i);
                let d = _mm256_set1_ps(xd * f16::to_f32(y.d));
                let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                acc[r] = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(bx, by), acc[r]);
            }
        }
        acc.map(|a| hsum_float_8(a))
    }
}

// Patched in by agent (vendor/README.md): Q5_1 (what llama.cpp's "Q5_K_M" gives rows that are not
// a multiple of 256) had no SIMD path either. ggml's AVX2 scheme: unsigned 5-bit quants (nibbles
// plus 0x10 where the fifth bit is set) against the signed Q8_1 quants, the block minimum through
// Q8_1's `s`.
#[inline(always)]
unsafe fn q5_1_quants(x: &BlockQ5_1) -> __m256i {
    let nibbles = bytes_from_nibbles_32(x.qs.as_ptr());
    _mm256_or_si256(
        nibbles,
        _mm256_and_si256(fifth_bits(x.qh), _mm256_set1_epi8(0x10)),
    )
}

/// Patched in by agent (vendor/README.md): one Q5_1 row against `R` Q8_1 rows, as
/// `vec_dot_q5_0_q8_0_rows`.
#[inline(always)]
pub(crate) fn vec_dot_q5_1_q8_1_rows<const R: usize>(
    n: usize,
    xs: &[BlockQ5_1],
    ys: [&[BlockQ8_1]; R],
) -> [f32; R] {
    debug_assert!(
        n.is_multiple_of(QK8_1),
        "vec_dot_q5_1_q8_1: {n} is not divisible by {QK8_1}"
    );
    let nb = xs.len().min(ys.iter().map(|y| y.len()).min().unwrap_or(0));
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut mins = [0f32; R];
        for i in 0..nb {
            let x = xs.get_unchecked(i);
            let (xd, xm, bx) = (f16::to_f32(x.d), f16::to_f32(x.m), q5_1_quants(x));
            for r in 0..R {
                let y = ys[r].get_unchecked(i);
                mins[r] += xm * f16::to_f32(y.s);
                let d = _mm256_set1_ps(xd * f16::to_f32(y.d));
                let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                acc[r] = _mm256_fmadd_ps(d, mul_sum_us8_pairs_float(bx, by), acc[r]);
            }
        }
        std::array::from_fn(|r| hsum_float_8(acc[r]) + mins[r])
    }
}

// Patched in by agent (vendor/README.md): candle 0.10.2 had no SIMD path for Q4_1, so every Q4_1
// model on x86 ran the scalar `vec_dot_unopt`. Same scheme as ggml's AVX2 `ggml_vec_dot_q4_1_q8_1`:
// the nibbles are unsigned (0..=15), so they go straight into `maddubs` against the signed Q8_1
// quants, and the block minimum comes back through Q8_1's precomputed `s = d * sum(qs)`.
#[inline(always)]
pub(crate) fn vec_dot_q4_1_q8_1(n: usize, xs: &[BlockQ4_1], ys: &[BlockQ8_1]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK8_1),
        "vec_dot_q4_1_q8_1: {n} is not divisible by {QK8_1}"
    );
    #[cfg(target_feature = "f16c")]
    unsafe {
        // Patched in by agent (vendor/README.md): decode runs this once per weight row, and the
        // block loop was bound by its four scalar f16 -> f32 conversions (two uops each) and two
        // scalar multiplies. Here each block's two f16 pairs, (d, m) and (d, s), are converted
        // with one `vcvtph2ps` each and multiplied in one `vmulps`: lane 0 is the scale of the
        // quant products, lane 1 the minimum term, which a vector add accumulates in lane 1 in the
        // same order as the scalar `summs` did. Same operations on the same values: the result is
        // bit-identical to the block-at-a-time kernels below (`q4_1_q8_1_block`).
        let mut acc = _mm256_setzero_ps();
        let mut acc_min = _mm_setzero_ps();
        for (x, y) in xs.iter().zip(ys.iter()) {
            let x_dm = f16_pair_to_f32(x as *const BlockQ4_1 as *const u8);
            let y_ds = f16_pair_to_f32(y as *const BlockQ8_1 as *const u8);
            let scales = _mm_mul_ps(x_dm, y_ds);
            acc_min = _mm_add_ps(acc_min, scales);
            let bx = bytes_from_nibbles_32(x.qs.as_ptr());
            let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            let q = mul_sum_us8_pairs_float(bx, by);
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(scales), q, acc);
        }
        return hsum_float_8(acc) + _mm_cvtss_f32(_mm_movehdup_ps(acc_min));
    }
    #[allow(unreachable_code)]
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for (x, y) in xs.iter().zip(ys.iter()) {
            let bx = bytes_from_nibbles_32(x.qs.as_ptr());
            q4_1_q8_1_block(x.d.to_f32(), x.m.to_f32(), bx, y, &mut acc, &mut summs);
        }
        hsum_float_8(acc) + summs
    }
}

/// The two f16 values at `ptr` (a block's leading `d` and `m`/`s`) as f32 in lanes 0 and 1.
#[cfg(target_feature = "f16c")]
#[inline(always)]
unsafe fn f16_pair_to_f32(ptr: *const u8) -> __m128 {
    let pair = std::ptr::read_unaligned(ptr as *const i32);
    _mm_cvtph_ps(_mm_cvtsi32_si128(pair))
}

/// One Q4_1 block (scale `xd`, minimum `xm`, nibbles unpacked to bytes in `bx`) against one Q8_1
/// block, accumulated into `acc` (the scaled products) and `summs` (the minimum term). Shared by
/// the one-row and four-row kernels so both give bit-identical results.
#[inline(always)]
unsafe fn q4_1_q8_1_block(
    xd: f32,
    xm: f32,
    bx: __m256i,
    y: &BlockQ8_1,
    acc: &mut __m256,
    summs: &mut f32,
) {
    *summs += xm * y.s.to_f32();
    let d = _mm256_set1_ps(xd * y.d.to_f32());
    let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
    let q = mul_sum_us8_pairs_float(bx, by);
    *acc = _mm256_fmadd_ps(d, q, *acc);
}

/// Patched in by agent (vendor/README.md): one Q4_1 weight row against four Q8_1 activation rows
/// (prompt processing), unpacking each weight block once instead of four times. Each of the four
/// results equals `vec_dot_q4_1_q8_1` of that row bit for bit.
#[inline(always)]
pub(crate) fn vec_dot_q4_1_q8_1_x4(n: usize, xs: &[BlockQ4_1], ys: [&[BlockQ8_1]; 4]) -> [f32; 4] {
    debug_assert!(
        n.is_multiple_of(QK8_1),
        "vec_dot_q4_1_q8_1_x4: {n} is not divisible by {QK8_1}"
    );
    let blocks = ys.iter().fold(xs.len(), |b, y| b.min(y.len()));
    let [y0, y1, y2, y3] = ys;
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut summs = [0f32; 4];
        for (i, x) in xs[..blocks].iter().enumerate() {
            let (xd, xm) = (x.d.to_f32(), x.m.to_f32());
            let bx = bytes_from_nibbles_32(x.qs.as_ptr());
            q4_1_q8_1_block(xd, xm, bx, y0.get_unchecked(i), &mut acc[0], &mut summs[0]);
            q4_1_q8_1_block(xd, xm, bx, y1.get_unchecked(i), &mut acc[1], &mut summs[1]);
            q4_1_q8_1_block(xd, xm, bx, y2.get_unchecked(i), &mut acc[2], &mut summs[2]);
            q4_1_q8_1_block(xd, xm, bx, y3.get_unchecked(i), &mut acc[3], &mut summs[3]);
        }
        [
            hsum_float_8(acc[0]) + summs[0],
            hsum_float_8(acc[1]) + summs[1],
            hsum_float_8(acc[2]) + summs[2],
            hsum_float_8(acc[3]) + summs[3],
        ]
    }
}

/// Patched in by agent (vendor/README.md): eight Q8_1 activation blocks (same block index of eight
/// rows) with their scales already in f32, laid out for `matmul_tile_q4_1_x8`.
#[repr(C, align(32))]
struct Q8_1x8 {
    d: [f32; 8],
    s: [f32; 8],
    qs: [[i8; QK8_1]; 8],
}

/// Patched in by agent (vendor/README.md): the prompt-matmul tile for Q4_1 weights, eight activation
/// rows at a time. The eight rows are repacked once per tile (scales converted from f16 once, not
/// once per weight row), and each weight block is unpacked once for the eight. Per lane the
/// arithmetic is that of `vec_dot_q4_1_q8_1` in the same order, so results are bit-identical.
/// Returns how many rows it did (a multiple of eight); the caller does the rest.
pub(crate) fn matmul_tile_q4_1_x8(
    n: usize,
    kb: usize,
    xs: &[BlockQ4_1],
    ys: &[BlockQ8_1],
    m: usize,
    out: &mut [f32],
) -> usize {
    debug_assert!(n.is_multiple_of(QK8_1));
    let cols = xs.len() / kb;
    assert!(ys.len() >= m * kb && out.len() >= cols * m && xs.len() == cols * kb);
    let mut packed: Vec<Q8_1x8> = Vec::with_capacity(kb);
    let mut r0 = 0;
    while r0 + 8 <= m {
        packed.clear();
        packed.extend((0..kb).map(|b| {
            let y = |r: usize| &ys[(r0 + r) * kb + b];
            Q8_1x8 {
                d: std::array::from_fn(|r| y(r).d.to_f32()),
                s: std::array::from_fn(|r| y(r).s.to_f32()),
                qs: std::array::from_fn(|r| y(r).qs),
            }
        }));
        for (c, col) in xs.chunks_exact(kb).enumerate() {
            let v = unsafe { dot_q4_1_x8(col, &packed) };
            for (i, v) in v.into_iter().enumerate() {
                out[(r0 + i) * cols + c] = v;
            }
        }
        r0 += 8;
    }
    r0
}

#[inline(always)]
unsafe fn dot_q4_1_x8(xs: &[BlockQ4_1], ys: &[Q8_1x8]) -> [f32; 8] {
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut summs = _mm256_setzero_ps();
    let mut d = [0f32; 8];
    for (x, y) in xs.iter().zip(ys.iter()) {
        let xd = _mm256_set1_ps(x.d.to_f32());
        let xm = _mm256_set1_ps(x.m.to_f32());
        _mm256_storeu_ps(
            d.as_mut_ptr(),
            _mm256_mul_ps(xd, _mm256_load_ps(y.d.as_ptr())),
        );
        summs = _mm256_add_ps(summs, _mm256_mul_ps(xm, _mm256_load_ps(y.s.as_ptr())));
        let bx = bytes_from_nibbles_32(x.qs.as_ptr());
        for r in 0..8 {
            let by = _mm256_load_si256(y.qs[r].as_ptr() as *const __m256i);
            let q = mul_sum_us8_pairs_float(bx, by);
            acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[r]), q, acc[r]);
        }
    }
    let mut s = [0f32; 8];
    _mm256_storeu_ps(s.as_mut_ptr(), summs);
    std::array::from_fn(|r| hsum_float_8(acc[r]) + s[r])
}

#[inline(always)]
pub(crate) fn vec_dot_q8_0_q8_0(n: usize, xs: &[BlockQ8_0], ys: &[BlockQ8_0]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK8_0),
        "vec_dot_q8_0_q8_0: {n} is not divisible by {QK8_0}"
    );
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for (x, y) in xs.iter().zip(ys.iter()) {
            let d = _mm256_set1_ps(f16::to_f32(x.d) * f16::to_f32(y.d));
            let bx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
            let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            let q = mul_sum_i8_pairs_float(bx, by);
            acc = _mm256_fmadd_ps(d, q, acc);
        }
        hsum_float_8(acc)
    }
}

/// Patched in by agent (vendor/README.md): `vec_dot_q8_0_q8_0` of one Q8_0 row with four Q8_0 rows
/// (prompts): each weight block loaded and its absolute values taken once; bit-identical to four
/// calls of it.
#[inline(always)]
pub(crate) fn vec_dot_q8_0_q8_0_x4(n: usize, xs: &[BlockQ8_0], ys: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    debug_assert!(
        n.is_multiple_of(QK8_0),
        "vec_dot_q8_0_q8_0_x4: {n} is not divisible by {QK8_0}"
    );
    let nb = xs.len().min(ys.iter().map(|y| y.len()).min().unwrap_or(0));
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in 0..nb {
            let x = xs.get_unchecked(i);
            let xd = f16::to_f32(x.d);
            let bx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
            let ax = _mm256_sign_epi8(bx, bx);
            for r in 0..4 {
                let y = ys[r].get_unchecked(i);
                let d = _mm256_set1_ps(xd * f16::to_f32(y.d));
                let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                let q = mul_sum_us8_pairs_float(ax, _mm256_sign_epi8(by, bx));
                acc[r] = _mm256_fmadd_ps(d, q, acc[r]);
            }
        }
        acc.map(|a| hsum_float_8(a))
    }
}

#[inline(always)]
unsafe fn get_scale_shuffle(i: usize) -> __m128i {
    const K_SHUFFLE: [u8; 128] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7,
        7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10,
        11, 11, 11, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13,
        13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15,
    ];
    _mm_loadu_si128((K_SHUFFLE.as_ptr() as *const __m128i).add(i))
}

#[inline(always)]
unsafe fn get_scale_shuffle_k4(i: usize) -> __m256i {
    const K_SHUFFLE: [u8; 256] = [
        0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
        0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        2, 3, 2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5,
        4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7,
        6, 7, 6, 7, 6, 7, 6, 7, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9,
        8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10,
        11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 12, 13, 12, 13, 12, 13,
        12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12,
        13, 12, 13, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15,
        14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15,
    ];
    _mm256_loadu_si256((K_SHUFFLE.as_ptr() as *const __m256i).add(i))
}

#[inline(always)]
unsafe fn get_scale_shuffle_q3k(i: usize) -> __m256i {
    const K_SHUFFLE: [u8; 128] = [
        0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7,
        6, 7, 6, 7, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11,
        10, 11, 10, 11, 10, 11, 10, 11, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12,
        13, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15,
    ];
    _mm256_loadu_si256((K_SHUFFLE.as_ptr() as *const __m256i).add(i))
}

#[inline(always)]
pub(crate) fn vec_dot_q6k_q8k(n: usize, xs: &[BlockQ6K], ys: &[BlockQ8K]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q6k_8k: {n} is not divisible by {QK_K}"
    );

    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let m2 = _mm256_set1_epi8(3);
        let mut acc = _mm256_setzero_ps();
        for (x, y) in xs.iter().zip(ys.iter()) {
            let d = y.d * x.d.to_f32();
            let mut q4 = x.ql.as_ptr();
            let mut qh = x.qh.as_ptr();
            let mut q8 = y.qs.as_ptr();

            let scales = _mm_loadu_si128(x.scales.as_ptr() as *const __m128i);
            // Patched in by agent (vendor/README.md): the quants' offset of 32 is taken off once per
            // block, as 32 × Σ scale × (sum of the group's activations), from the Q8K block's group
            // sums, instead of once per 32 activations (two instructions fewer per 32).
            let mut sumi = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32(
                    _mm256_madd_epi16(
                        _mm256_cvtepi8_epi16(scales),
                        _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i),
                    ),
                    5,
                ),
            );

            for j in 0..QK_K / 128 {
                let is = j * 4;
                let scale_0 = _mm_shuffle_epi8(scales, get_scale_shuffle(is));
                let scale_1 = _mm_shuffle_epi8(scales, get_scale_shuffle(is + 1));
                let scale_2 = _mm_shuffle_epi8(scales, get_scale_shuffle(is + 2));
                let scale_3 = _mm_shuffle_epi8(scales, get_scale_shuffle(is + 3));

                let q4bits1 = _mm256_loadu_si256(q4 as *const __m256i);
                q4 = q4.add(32);
                let q4bits2 = _mm256_loadu_si256(q4 as *const __m256i);
                q4 = q4.add(32);
                let q4bits_h = _mm256_loadu_si256(qh as *const __m256i);
                qh = qh.add(32);

                let q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m2), 4);
                let q4h_1 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 2), m2), 4);
                let q4h_2 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 4), m2), 4);
                let q4h_3 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 6), m2), 4);

                let q4_0 = _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0);
                let q4_1 = _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1);
                let q4_2 =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m4), q4h_2);
                let q4_3 =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m4), q4h_3);

                let q8_0 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_1 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_2 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_3 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);

                let p16_0 = _mm256_maddubs_epi16(q4_0, q8_0);
                let p16_1 = _mm256_maddubs_epi16(q4_1, q8_1);
                let p16_2 = _mm256_maddubs_epi16(q4_2, q8_2);
                let p16_3 = _mm256_maddubs_epi16(q4_3, q8_3);

                sumi = madd_acc_epi16(sumi, _mm256_cvtepi8_epi16(scale_0), p16_0);
                sumi = madd_acc_epi16(sumi, _mm256_cvtepi8_epi16(scale_1), p16_1);
                sumi = madd_acc_epi16(sumi, _mm256_cvtepi8_epi16(scale_2), p16_2);
                sumi = madd_acc_epi16(sumi, _mm256_cvtepi8_epi16(scale_3), p16_3);
            }
            acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_float_8(acc)
    }
}

/// Patched in by agent (vendor/README.md): `vec_dot_q6k_q8k` of one Q6K row with four Q8K rows.
/// Each weight block's 6-bit quants are assembled and its scales widened once for the four rows;
/// every row's sums are formed in the same order and lanes as in `vec_dot_q6k_q8k`, so the results
/// are bit-identical to four calls of it.
#[inline(always)]
pub(crate) fn vec_dot_q6k_q8k_x4(n: usize, xs: &[BlockQ6K], ys: [&[BlockQ8K]; 4]) -> [f32; 4] {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q6k_q8k_x4: {n} is not divisible by {QK_K}"
    );
    let nb = xs.len().min(ys.iter().map(|y| y.len()).min().unwrap_or(0));
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let m2 = _mm256_set1_epi8(3);
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in 0..nb {
            let x = xs.get_unchecked(i);
            let xd = x.d.to_f32();
            let q8: [*const i8; 4] = [
                ys[0].get_unchecked(i).qs.as_ptr(),
                ys[1].get_unchecked(i).qs.as_ptr(),
                ys[2].get_unchecked(i).qs.as_ptr(),
                ys[3].get_unchecked(i).qs.as_ptr(),
            ];
            let scales = _mm_loadu_si128(x.scales.as_ptr() as *const __m128i);
            let scales16 = _mm256_cvtepi8_epi16(scales);
            let mut sumi = [0, 1, 2, 3].map(|r| {
                let bsums = ys[r].get_unchecked(i).bsums.as_ptr() as *const __m256i;
                _mm256_sub_epi32(
                    _mm256_setzero_si256(),
                    _mm256_slli_epi32(_mm256_madd_epi16(scales16, _mm256_loadu_si256(bsums)), 5),
                )
            });
            for j in 0..QK_K / 128 {
                let is = j * 4;
                let sc = [
                    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, get_scale_shuffle(is))),
                    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, get_scale_shuffle(is + 1))),
                    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, get_scale_shuffle(is + 2))),
                    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, get_scale_shuffle(is + 3))),
                ];
                let q4bits1 = _mm256_loadu_si256(x.ql.as_ptr().add(64 * j) as *const __m256i);
                let q4bits2 = _mm256_loadu_si256(x.ql.as_ptr().add(64 * j + 32) as *const __m256i);
                let q4bits_h = _mm256_loadu_si256(x.qh.as_ptr().add(32 * j) as *const __m256i);
                let q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m2), 4);
                let q4h_1 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 2), m2), 4);
                let q4h_2 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 4), m2), 4);
                let q4h_3 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 6), m2), 4);
                let q = [
                    _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0),
                    _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m4), q4h_2),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m4), q4h_3),
                ];
                for r in 0..4 {
                    for k in 0..4 {
                        let q8k = _mm256_loadu_si256(q8[r].add(128 * j + 32 * k) as *const __m256i);
                        sumi[r] = madd_acc_epi16(sumi[r], sc[k], _mm256_maddubs_epi16(q[k], q8k));
                    }
                }
            }
            for r in 0..4 {
                let d = ys[r].get_unchecked(i).d * xd;
                acc[r] =
                    _mm256_fmadd_ps(_mm256_broadcast_ss(&d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
        acc.map(|a| hsum_float_8(a))
    }
}

#[inline(always)]
unsafe fn mm256_set_m128i(a: __m128i, b: __m128i) -> __m256i {
    _mm256_insertf128_si256(_mm256_castsi128_si256(b), a, 1)
}

#[inline(always)]
pub(crate) fn vec_dot_q2k_q8k(n: usize, xs: &[BlockQ2K], ys: &[BlockQ8K]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q2k_q8k: {n} is not divisible by {QK_K}"
    );

    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let m4 = _mm_set1_epi8(0xF);

        let mut acc = _mm256_setzero_ps();

        for (x, y) in xs.iter().zip(ys.iter()) {
            let d = y.d * x.d.to_f32();
            let dmin = -y.d * x.dmin.to_f32();

            let mut q2 = x.qs.as_ptr();
            let mut q8 = y.qs.as_ptr();

            let mins_and_scales = _mm_loadu_si128(x.scales.as_ptr() as *const __m128i);
            let scales8 = _mm_and_si128(mins_and_scales, m4);
            let mins8 = _mm_and_si128(_mm_srli_epi16(mins_and_scales, 4), m4);
            let mins = _mm256_cvtepi8_epi16(mins8);
            let prod =
                _mm256_madd_epi16(mins, _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i));

            acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&dmin), _mm256_cvtepi32_ps(prod), acc);

            let all_scales = _mm256_cvtepi8_epi16(scales8);
            let l_scales = _mm256_extracti128_si256(all_scales, 0);
            let h_scales = _mm256_extracti128_si256(all_scales, 1);
            let scales = [
                mm256_set_m128i(l_scales, l_scales),
                mm256_set_m128i(h_scales, h_scales),
            ];

            let mut sumi = _mm256_setzero_si256();

            for scale in scales {
                let q2bits = _mm256_loadu_si256(q2 as *const __m256i);
                q2 = q2.add(32);

                let q8_0 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_1 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_2 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_3 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);

                let q2_0 = _mm256_and_si256(q2bits, m3);
                let q2_1 = _mm256_and_si256(_mm256_srli_epi16(q2bits, 2), m3);
                let q2_2 = _mm256_and_si256(_mm256_srli_epi16(q2bits, 4), m3);
                let q2_3 = _mm256_and_si256(_mm256_srli_epi16(q2bits, 6), m3);

                let p0 = _mm256_maddubs_epi16(q2_0, q8_0);
                let p1 = _mm256_maddubs_epi16(q2_1, q8_1);
                let p2 = _mm256_maddubs_epi16(q2_2, q8_2);
                let p3 = _mm256_maddubs_epi16(q2_3, q8_3);

                let p0 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(scale, get_scale_shuffle_q3k(0)), p0);
                let p1 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(scale, get_scale_shuffle_q3k(1)), p1);
                let p2 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(scale, get_scale_shuffle_q3k(2)), p2);
                let p3 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(scale, get_scale_shuffle_q3k(3)), p3);

                let p0 = _mm256_add_epi32(p0, p1);
                let p2 = _mm256_add_epi32(p2, p3);

                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p2));
            }
            acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&d), _mm256_cvtepi32_ps(sumi), acc);
        }

        hsum_float_8(acc)
    }
}

#[inline(always)]
pub(crate) fn vec_dot_q3k_q8k(n: usize, xs: &[BlockQ3K], ys: &[BlockQ8K]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q3k_q8k: {n} is not divisible by {QK_K}"
    );

    const KMASK1: u32 = 0x03030303;
    const KMASK2: u32 = 0x0f0f0f0f;

    let mut aux = [0u32; 3];

    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mone = _mm256_set1_epi8(1);
        let m32 = _mm_set1_epi8(32);

        let mut acc = _mm256_setzero_ps();
        for (x, y) in xs.iter().zip(ys.iter()) {
            let d = y.d * x.d.to_f32();

            let mut q3 = x.qs.as_ptr();
            let mut q8 = y.qs.as_ptr();

            LittleEndian::read_u32_into(&x.scales, &mut aux);
            let scales128 = _mm_set_epi32(
                (((aux[1] >> 4) & KMASK2) | (((aux[2] >> 6) & KMASK1) << 4)) as i32,
                (((aux[0] >> 4) & KMASK2) | (((aux[2] >> 4) & KMASK1) << 4)) as i32,
                ((aux[1] & KMASK2) | (((aux[2] >> 2) & KMASK1) << 4)) as i32,
                ((aux[0] & KMASK2) | (((aux[2]) & KMASK1) << 4)) as i32,
            );
            let scales128 = _mm_sub_epi8(scales128, m32);
            let all_scales = _mm256_cvtepi8_epi16(scales128);
            let l_scales = _mm256_extracti128_si256(all_scales, 0);
            let h_scales = _mm256_extracti128_si256(all_scales, 1);
            let scales = [
                mm256_set_m128i(l_scales, l_scales),
                mm256_set_m128i(h_scales, h_scales),
            ];

            // high bit
            let hbits = _mm256_loadu_si256(x.hmask.as_ptr() as *const __m256i);

            let mut sumi = _mm256_setzero_si256();

            for (j, scale) in scales.iter().enumerate() {
                // load low 2 bits
                let q3bits = _mm256_loadu_si256(q3 as *const __m256i);
                q3 = q3.add(32);

                // Prepare low and high bits
                // We hardcode the shifts here to avoid loading them into a separate register
                let q3l_0 = _mm256_and_si256(q3bits, m3);
                let q3h_0 = if j == 0 {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 0)), 0)
                } else {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 4)), 4)
                };
                let q3h_0 = _mm256_slli_epi16(q3h_0, 2);

                let q3l_1 = _mm256_and_si256(_mm256_srli_epi16(q3bits, 2), m3);
                let q3h_1 = if j == 0 {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 1)), 1)
                } else {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 5)), 5)
                };
                let q3h_1 = _mm256_slli_epi16(q3h_1, 2);

                let q3l_2 = _mm256_and_si256(_mm256_srli_epi16(q3bits, 4), m3);
                let q3h_2 = if j == 0 {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 2)), 2)
                } else {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 6)), 6)
                };
                let q3h_2 = _mm256_slli_epi16(q3h_2, 2);

                let q3l_3 = _mm256_and_si256(_mm256_srli_epi16(q3bits, 6), m3);
                let q3h_3 = if j == 0 {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 3)), 3)
                } else {
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, 7)), 7)
                };
                let q3h_3 = _mm256_slli_epi16(q3h_3, 2);

                // load Q8 quants
                let q8_0 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_1 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_2 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_3 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);

                // Dot product: we multiply the 2 low bits and 1 high bit part separately, so we
                // can use _mm256_maddubs_epi16, and then subtract. The high bit part has the 2
                // already subtracted (and so, it is zero if the high bit was not set, and 2 if the
                // high bit was set)
                let q8s_0 = _mm256_maddubs_epi16(q3h_0, q8_0);
                let q8s_1 = _mm256_maddubs_epi16(q3h_1, q8_1);
                let q8s_2 = _mm256_maddubs_epi16(q3h_2, q8_2);
                let q8s_3 = _mm256_maddubs_epi16(q3h_3, q8_3);

                let p16_0 = _mm256_maddubs_epi16(q3l_0, q8_0);
                let p16_1 = _mm256_maddubs_epi16(q3l_1, q8_1);
                let p16_2 = _mm256_maddubs_epi16(q3l_2, q8_2);
                let p16_3 = _mm256_maddubs_epi16(q3l_3, q8_3);

                let p16_0 = _mm256_sub_epi16(p16_0, q8s_0);
                let p16_1 = _mm256_sub_epi16(p16_1, q8s_1);
                let p16_2 = _mm256_sub_epi16(p16_2, q8s_2);
                let p16_3 = _mm256_sub_epi16(p16_3, q8s_3);

                // multiply with scales
                let p16_0 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(*scale, get_scale_shuffle_q3k(0)), p16_0);
                let p16_1 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(*scale, get_scale_shuffle_q3k(1)), p16_1);
                let p16_2 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(*scale, get_scale_shuffle_q3k(2)), p16_2);
                let p16_3 =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(*scale, get_scale_shuffle_q3k(3)), p16_3);

                // accumulate
                let p16_0 = _mm256_add_epi32(p16_0, p16_1);
                let p16_2 = _mm256_add_epi32(p16_2, p16_3);
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_2));
            }

            // multiply with block scale and accumulate
            acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_float_8(acc)
    }
}

#[inline(always)]
pub(crate) fn vec_dot_q4k_q8k(n: usize, xs: &[BlockQ4K], ys: &[BlockQ8K]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q4k_q8k: {n} is not divisible by {QK_K}"
    );
    let mut utmp = [0u32; 4];
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;

    unsafe {
        let m4 = _mm256_set1_epi8(0xF);

        let mut acc = _mm256_setzero_ps();
        let mut acc_m = _mm_setzero_ps();

        for (x, y) in xs.iter().zip(ys.iter()) {
            let d = y.d * x.d.to_f32();
            let dmin = -y.d * x.dmin.to_f32();

            LittleEndian::read_u32_into(&x.scales, &mut utmp[0..3]);

            utmp[3] = ((utmp[2] >> 4) & KMASK2) | (((utmp[1] >> 6) & KMASK3) << 4);
            let uaux = utmp[1] & KMASK1;
            utmp[1] = (utmp[2] & KMASK2) | (((utmp[0] >> 6) & KMASK3) << 4);
            utmp[2] = uaux;
            utmp[0] &= KMASK1;

            let mut q4 = x.qs.as_ptr();
            let mut q8 = y.qs.as_ptr();

            let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(
                utmp[3] as i32,
                utmp[2] as i32,
                utmp[1] as i32,
                utmp[0] as i32,
            ));

            let q8sums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let q8s = _mm_hadd_epi16(
                _mm256_extracti128_si256(q8sums, 0),
                _mm256_extracti128_si256(q8sums, 1),
            );
            let prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
            acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

            let sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
            let scales = mm256_set_m128i(sc128, sc128);

            let mut sumi = _mm256_setzero_si256();

            for j in 0..QK_K / 64 {
                let scale_l = _mm256_shuffle_epi8(scales, get_scale_shuffle_k4(2 * j));
                let scale_h = _mm256_shuffle_epi8(scales, get_scale_shuffle_k4(2 * j + 1));

                let q4bits = _mm256_loadu_si256(q4 as *const __m256i);
                q4 = q4.add(32);
                let q4l = _mm256_and_si256(q4bits, m4);
                let q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);

                let q8l = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let p16l = _mm256_maddubs_epi16(q4l, q8l);
                sumi = madd_acc_epi16(sumi, scale_l, p16l);

                let q8h = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let p16h = _mm256_maddubs_epi16(q4h, q8h);
                sumi = madd_acc_epi16(sumi, scale_h, p16h);
            }

            let vd = _mm256_set1_ps(d);
            acc = _mm256_fmadd_ps(vd, _mm256_cvtepi32_ps(sumi), acc);
        }

        let acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
        let acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));

        hsum_float_8(acc) + _mm_cvtss_f32(acc_m)
    }
}

/// Patched in by agent (vendor/README.md): `vec_dot_q4k_q8k` of one Q4K row with `R` Q8K rows (a
/// prompt tile uses four: eight measured slower on an AVX-512 machine). Each weight block's scales and mins are decoded and its
/// nibbles unpacked once for the `R` rows; the rows' sums per 32 activations (`sums`, from
/// `k_quants::q8k_sums32`) come precomputed, since every weight row of a tile needs the same ones for
/// its minimum term. Every row's sums are formed in the same order as in `vec_dot_q4k_q8k`, so the
/// results are bit-identical to `R` calls of it.
#[inline(always)]
pub(crate) fn vec_dot_q4k_q8k_rows<const R: usize>(
    n: usize,
    xs: &[BlockQ4K],
    ys: [&[BlockQ8K]; R],
    sums: [&[[i16; 8]]; R],
) -> [f32; R] {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q4k_q8k_rows: {n} is not divisible by {QK_K}"
    );
    let nb = xs.len().min(ys.iter().map(|y| y.len()).min().unwrap_or(0));
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_m = [_mm_setzero_ps(); R];

        for i in 0..nb {
            let x = xs.get_unchecked(i);
            let xd = x.d.to_f32();
            let xmin = x.dmin.to_f32();

            let mins_and_scales = q4k_mins_and_scales(x);
            let mins = _mm256_extracti128_si256(mins_and_scales, 1);
            let sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
            let scales = mm256_set_m128i(sc128, sc128);

            for r in 0..R {
                let dmin = -ys[r].get_unchecked(i).d * xmin;
                let q8s = _mm_loadu_si128(sums[r].get_unchecked(i).as_ptr() as *const __m128i);
                let prod = _mm_madd_epi16(mins, q8s);
                acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[r]);
            }

            let mut sumi = [_mm256_setzero_si256(); R];
            let q4 = x.qs.as_ptr();
            for j in 0..QK_K / 64 {
                let scale_l = _mm256_shuffle_epi8(scales, get_scale_shuffle_k4(2 * j));
                let scale_h = _mm256_shuffle_epi8(scales, get_scale_shuffle_k4(2 * j + 1));
                let q4bits = _mm256_loadu_si256(q4.add(32 * j) as *const __m256i);
                let q4l = _mm256_and_si256(q4bits, m4);
                let q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
                for r in 0..R {
                    let q8 = ys[r].get_unchecked(i).qs.as_ptr();
                    let q8l = _mm256_loadu_si256(q8.add(64 * j) as *const __m256i);
                    sumi[r] = madd_acc_epi16(sumi[r], scale_l, _mm256_maddubs_epi16(q4l, q8l));
                    let q8h = _mm256_loadu_si256(q8.add(64 * j + 32) as *const __m256i);
                    sumi[r] = madd_acc_epi16(sumi[r], scale_h, _mm256_maddubs_epi16(q4h, q8h));
                }
            }
            for r in 0..R {
                let d = ys[r].get_unchecked(i).d * xd;
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }

        std::array::from_fn(|r| {
            let m = _mm_add_ps(acc_m[r], _mm_movehl_ps(acc_m[r], acc_m[r]));
            let m = _mm_add_ss(m, _mm_movehdup_ps(m));
            hsum_float_8(acc[r]) + _mm_cvtss_f32(m)
        })
    }
}

/// Patched in by agent (vendor/README.md): the scales and mins of a Q4K block as `vec_dot_q4k_q8k`
/// decodes them: 8 scales in the low 128 bits, 8 mins in the high, as i16.
#[inline(always)]
unsafe fn q4k_mins_and_scales(x: &BlockQ4K) -> __m256i {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    let mut utmp = [0u32; 4];
    LittleEndian::read_u32_into(&x.scales, &mut utmp[0..3]);
    utmp[3] = ((utmp[2] >> 4) & KMASK2) | (((utmp[1] >> 6) & KMASK3) << 4);
    let uaux = utmp[1] & KMASK1;
    utmp[1] = (utmp[2] & KMASK2) | (((utmp[0] >> 6) & KMASK3) << 4);
    utmp[2] = uaux;
    utmp[0] &= KMASK1;
    _mm256_cvtepu8_epi16(_mm_set_epi32(
        utmp[3] as i32,
        utmp[2] as i32,
        utmp[1] as i32,
        utmp[0] as i32,
    ))
}

/// Patched in by agent (vendor/README.md): `acc + madd(a, b)` on 512 bits, one `vpdpwssd` with VNNI.
#[cfg(all(target_feature = "avx512bw", target_feature = "avx512dq"))]
#[inline(always)]
unsafe fn madd_acc_epi16_512(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    #[cfg(target_feature = "avx512vnni")]
    return _mm512_dpwssd_epi32(acc, a, b);
    #[allow(unreachable_code)]
    _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
}

/// Patched in by agent (vendor/README.md): `vec_dot_q4k_q8k_rows` for two Q4K weight rows at once,
/// on AVX-512: each 512-bit register holds the first weight row's 256-bit lane of
/// `vec_dot_q4k_q8k_rows` in its low half and the second's in its high half, with the activations
/// broadcast to both, so every instruction does the work of two 256-bit ones. Lane for lane the
/// integer sums, the conversions and the fused multiply-adds are those of `vec_dot_q4k_q8k`, so
/// `out[w][r]` is bit-identical to `vec_dot_q4k_q8k(n, xs[w], ys[r])`.
#[cfg(all(target_feature = "avx512bw", target_feature = "avx512dq"))]
#[inline(always)]
pub(crate) fn vec_dot_q4k_q8k_rows_x2<const R: usize>(
    n: usize,
    xs: [&[BlockQ4K]; 2],
    ys: [&[BlockQ8K]; R],
    sums: [&[[i16; 8]]; R],
) -> [[f32; R]; 2] {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q4k_q8k_rows_x2: {n} is not divisible by {QK_K}"
    );
    let nb = xs[0]
        .len()
        .min(xs[1].len())
        .min(ys.iter().map(|y| y.len()).min().unwrap_or(0));
    unsafe {
        let m4 = _mm512_set1_epi8(0xF);
        let mut acc = [_mm512_setzero_ps(); R];
        let mut acc_m = [[_mm_setzero_ps(); R]; 2];
        for i in 0..nb {
            let (x0, x1) = (xs[0].get_unchecked(i), xs[1].get_unchecked(i));
            let (xd0, xd1) = (x0.d.to_f32(), x1.d.to_f32());
            let (xmin0, xmin1) = (x0.dmin.to_f32(), x1.dmin.to_f32());
            let ms0 = q4k_mins_and_scales(x0);
            let ms1 = q4k_mins_and_scales(x1);
            let (mins0, mins1) = (
                _mm256_extracti128_si256(ms0, 1),
                _mm256_extracti128_si256(ms1, 1),
            );
            let (sc0, sc1) = (
                _mm256_extracti128_si256(ms0, 0),
                _mm256_extracti128_si256(ms1, 0),
            );
            let scales = _mm512_inserti64x4(
                _mm512_castsi256_si512(mm256_set_m128i(sc0, sc0)),
                mm256_set_m128i(sc1, sc1),
                1,
            );

            for r in 0..R {
                let y = ys[r].get_unchecked(i);
                let q8s = _mm_loadu_si128(sums[r].get_unchecked(i).as_ptr() as *const __m128i);
                let p0 = _mm_madd_epi16(mins0, q8s);
                let p1 = _mm_madd_epi16(mins1, q8s);
                acc_m[0][r] =
                    _mm_fmadd_ps(_mm_set1_ps(-y.d * xmin0), _mm_cvtepi32_ps(p0), acc_m[0][r]);
                acc_m[1][r] =
                    _mm_fmadd_ps(_mm_set1_ps(-y.d * xmin1), _mm_cvtepi32_ps(p1), acc_m[1][r]);
            }

            // The low and the high nibbles' sums in separate registers: two dependency chains
            // per row instead of one (the integer total is the same).
            let mut sumi = [_mm512_setzero_si512(); R];
            let mut sumh = [_mm512_setzero_si512(); R];
            let (q40, q41) = (x0.qs.as_ptr(), x1.qs.as_ptr());
            for j in 0..QK_K / 64 {
                let scale_l = _mm512_shuffle_epi8(
                    scales,
                    _mm512_broadcast_i64x4(get_scale_shuffle_k4(2 * j)),
                );
                let scale_h = _mm512_shuffle_epi8(
                    scales,
                    _mm512_broadcast_i64x4(get_scale_shuffle_k4(2 * j + 1)),
                );
                let q4bits = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256(q40.add(32 * j) as *const __m256i)),
                    _mm256_loadu_si256(q41.add(32 * j) as *const __m256i),
                    1,
                );
                let q4l = _mm512_and_si512(q4bits, m4);
                let q4h = _mm512_and_si512(_mm512_srli_epi16(q4bits, 4), m4);
                for r in 0..R {
                    let q8 = ys[r].get_unchecked(i).qs.as_ptr();
                    let q8l = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                        q8.add(64 * j) as *const __m256i
                    ));
                    sumi[r] = madd_acc_epi16_512(sumi[r], scale_l, _mm512_maddubs_epi16(q4l, q8l));
                    let q8h = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                        q8.add(64 * j + 32) as *const __m256i
                    ));
                    sumh[r] = madd_acc_epi16_512(sumh[r], scale_h, _mm512_maddubs_epi16(q4h, q8h));
                }
            }
            for r in 0..R {
                let yd = ys[r].get_unchecked(i).d;
                let d = _mm512_insertf32x8(_mm512_set1_ps(yd * xd0), _mm256_set1_ps(yd * xd1), 1);
                let sum = _mm512_add_epi32(sumi[r], sumh[r]);
                acc[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sum), acc[r]);
            }
        }

        let finish = |a: __m256, m: __m128| {
            let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_add_ss(m, _mm_movehdup_ps(m));
            hsum_float_8(a) + _mm_cvtss_f32(m)
        };
        [
            std::array::from_fn(|r| finish(_mm512_castps512_ps256(acc[r]), acc_m[0][r])),
            std::array::from_fn(|r| finish(_mm512_extractf32x8_ps(acc[r], 1), acc_m[1][r])),
        ]
    }
}

#[inline(always)]
pub(crate) fn vec_dot_q5k_q8k(n: usize, xs: &[BlockQ5K], ys: &[BlockQ8K]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q5k_q8k: {n} is not divisible by {QK_K}"
    );
    let mut utmp = [0u32; 4];
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;

    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let mzero = _mm_setzero_si128();
        let mone = _mm256_set1_epi8(1);

        let mut acc = _mm256_setzero_ps();
        let mut summs = 0.0;

        for (x, y) in xs.iter().zip(ys.iter()) {
            let d = y.d * x.d.to_f32();
            let dmin = -y.d * x.dmin.to_f32();

            LittleEndian::read_u32_into(&x.scales, &mut utmp[0..3]);

            utmp[3] = ((utmp[2] >> 4) & KMASK2) | (((utmp[1] >> 6) & KMASK3) << 4);
            let uaux = utmp[1] & KMASK1;
            utmp[1] = (utmp[2] & KMASK2) | (((utmp[0] >> 6) & KMASK3) << 4);
            utmp[2] = uaux;
            utmp[0] &= KMASK1;

            let mut q5 = x.qs.as_ptr();
            let mut q8 = y.qs.as_ptr();

            let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(
                utmp[3] as i32,
                utmp[2] as i32,
                utmp[1] as i32,
                utmp[0] as i32,
            ));

            let q8sums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let q8s = _mm_hadd_epi16(
                _mm256_extracti128_si256(q8sums, 0),
                _mm256_extracti128_si256(q8sums, 1),
            );
            let prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
            let hsum = _mm_hadd_epi32(_mm_hadd_epi32(prod, mzero), mzero);
            summs += dmin * _mm_extract_epi32(hsum, 0) as f32;

            let sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
            let scales = mm256_set_m128i(sc128, sc128);

            let hbits = _mm256_loadu_si256(x.qh.as_ptr() as *const __m256i);
            let mut hmask = mone;

            let mut sumi = _mm256_setzero_si256();

            for j in 0..QK_K / 64 {
                let scale_0 = _mm256_shuffle_epi8(scales, get_scale_shuffle_k4(2 * j));
                let scale_1 = _mm256_shuffle_epi8(scales, get_scale_shuffle_k4(2 * j + 1));

                let q5bits = _mm256_loadu_si256(q5 as *const __m256i);
                q5 = q5.add(32);

                //Similar to q3k we hardcode the shifts here to avoid loading them into a separate register
                let q5l_0 = _mm256_and_si256(q5bits, m4);
                let q5l_0_shift_input = _mm256_and_si256(hbits, hmask);
                let q5l_0_right_shift = match j {
                    0 => _mm256_srli_epi16(q5l_0_shift_input, 0),
                    1 => _mm256_srli_epi16(q5l_0_shift_input, 2),
                    2 => _mm256_srli_epi16(q5l_0_shift_input, 4),
                    3 => _mm256_srli_epi16(q5l_0_shift_input, 6),
                    _ => unreachable!(),
                };
                let q5h_0 = _mm256_slli_epi16(q5l_0_right_shift, 4);
                let q5_0 = _mm256_add_epi8(q5l_0, q5h_0);
                hmask = _mm256_slli_epi16(hmask, 1);

                let q5l_1 = _mm256_and_si256(_mm256_srli_epi16(q5bits, 4), m4);
                let q5l_1_shift_input = _mm256_and_si256(hbits, hmask);
                let q5l_1_right_shift = match j {
                    0 => _mm256_srli_epi16(q5l_1_shift_input, 1),
                    1 => _mm256_srli_epi16(q5l_1_shift_input, 3),
                    2 => _mm256_srli_epi16(q5l_1_shift_input, 5),
                    3 => _mm256_srli_epi16(q5l_1_shift_input, 7),
                    _ => unreachable!(),
                };

                let q5h_1 = _mm256_slli_epi16(q5l_1_right_shift, 4);
                let q5_1 = _mm256_add_epi8(q5l_1, q5h_1);
                hmask = _mm256_slli_epi16(hmask, 1);

                let q8_0 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);
                let q8_1 = _mm256_loadu_si256(q8 as *const __m256i);
                q8 = q8.add(32);

                let p16_0 = _mm256_maddubs_epi16(q5_0, q8_0);
                let p16_1 = _mm256_maddubs_epi16(q5_1, q8_1);

                let p16_0 = _mm256_madd_epi16(scale_0, p16_0);
                let p16_1 = _mm256_madd_epi16(scale_1, p16_1);

                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
            }
            let vd = _mm256_set1_ps(d);
            acc = _mm256_fmadd_ps(vd, _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_float_8(acc) + summs
    }
}

#[inline(always)]
pub(crate) fn vec_dot_q8k_q8k(n: usize, xs: &[BlockQ8K], ys: &[BlockQ8K]) -> f32 {
    debug_assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_q8k_8k: {n} is not divisible by {QK_K}"
    );
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for (xs, ys) in xs.iter().zip(ys.iter()) {
            let mut sumi = _mm256_setzero_si256();
            let x_qs = xs.qs.as_ptr();
            let y_qs = ys.qs.as_ptr();
            for j in (0..QK_K).step_by(32) {
                let xs = _mm256_loadu_si256(x_qs.add(j) as *const __m256i);
                let ys = _mm256_loadu_si256(y_qs.add(j) as *const __m256i);

                let xs0 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(xs, 0));
                let ys0 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(ys, 0));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(xs0, ys0));

                let xs1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(xs, 1));
                let ys1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(ys, 1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(xs1, ys1));
            }
            let d = _mm256_set1_ps(xs.d * ys.d);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_float_8(acc)
    }
}
