//! Patched in by agent (vendor/README.md): the CPU softmax used by mistral.rs's prompt attention
//! against libm's `expf` and a plain softmax.
use candle_core::cpu::softmax::{exp_nonpositive, softmax_in_place};

#[test]
fn exp_matches_libm_over_the_whole_range() {
    let mut worst = 0f32;
    let mut x = 0f32;
    while x > -87.0 {
        let (ours, libm) = (exp_nonpositive(x), x.exp());
        worst = worst.max((ours - libm).abs() / libm);
        x -= 0.001_37;
    }
    assert!(worst < 1e-6, "worst relative error {worst}");
    assert_eq!(exp_nonpositive(0.0), 1.0);
    assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_nonpositive(-1000.0), 0.0);
    assert!(exp_nonpositive(f32::NAN).is_nan());
}

#[test]
fn softmax_matches_a_plain_one_with_masked_entries() {
    // Rows of odd lengths (not multiples of the 8-lane chunks), some entries masked to -inf.
    for len in [1usize, 7, 8, 9, 37, 1000] {
        let row: Vec<f32> = (0..len)
            .map(|i| {
                if i % 5 == 3 {
                    f32::NEG_INFINITY
                } else {
                    ((i * 7919) % 97) as f32 / 9.0 - 4.0
                }
            })
            .collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let mut ours = row.clone();
        softmax_in_place(&mut ours);
        for (i, (a, e)) in ours.iter().zip(&exps).enumerate() {
            let b = e / sum;
            assert!(
                (a - b).abs() <= 1e-6 * b.max(1e-3),
                "len {len}, [{i}]: {a} vs {b}"
            );
        }
    }
    let mut masked = vec![f32::NEG_INFINITY; 5];
    softmax_in_place(&mut masked);
    assert_eq!(masked, vec![0.0; 5]);
}
