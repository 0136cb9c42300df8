//! Tensors computed on in place in a memory-mapped GGUF file (`quantized::mapped`, patched in by
//! agent) against the same tensors read into memory: same bytes, bit-identical products; a
//! tensor said to lie beyond the file's end is an error, a misaligned one is copied.

use candle_core::quantized::{gguf_file, mapped, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use std::path::PathBuf;

/// A GGUF file under the temp dir, removed when dropped.
struct TempGguf(PathBuf);

impl Drop for TempGguf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_gguf(name: &str, tensors: &[(&str, &QTensor)]) -> Result<TempGguf> {
    let path =
        std::env::temp_dir().join(format!("candle-mapped-{}-{name}.gguf", std::process::id()));
    let file = TempGguf(path);
    let mut out = std::fs::File::create(&file.0)?;
    gguf_file::write(&mut out, &[], tensors)?;
    Ok(file)
}

const TYPES: [GgmlDType; 7] = [
    GgmlDType::Q4K,
    GgmlDType::Q6K,
    GgmlDType::Q8_0,
    GgmlDType::Q5_0,
    GgmlDType::Q4_1,
    GgmlDType::F16,
    GgmlDType::F32,
];

#[test]
fn mapped_tensors_compute_as_read_ones() -> Result<()> {
    let weights = Tensor::randn(0f32, 1.0, (24, 512), &Device::Cpu)?;
    let quantized: Vec<(String, QTensor)> = TYPES
        .iter()
        .map(|&dtype| Ok((format!("w.{dtype:?}"), QTensor::quantize(&weights, dtype)?)))
        .collect::<Result<_>>()?;
    let named: Vec<(&str, &QTensor)> = quantized.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let file = write_gguf("same", &named)?;

    let mut reader = std::fs::File::open(&file.0)?;
    let content = gguf_file::Content::read(&mut reader)?;
    let map = mapped::MappedFile::new(&reader)?;
    let input = Tensor::randn(0f32, 1.0, (5, 512), &Device::Cpu)?;
    for (name, _) in &quantized {
        let info = &content.tensor_infos[name];
        let read = info.read(&mut reader, content.tensor_data_offset, &Device::Cpu)?;
        let start = (content.tensor_data_offset + info.offset) as usize;
        let in_place =
            mapped::tensor_from_map(&map, start, info.ggml_dtype, info.shape.dims().to_vec())?;
        assert_eq!(in_place.dtype(), read.dtype(), "{name}");
        assert_eq!(in_place.shape(), read.shape(), "{name}");
        assert_eq!(in_place.data()?, read.data()?, "{name}: bytes differ");
        // The in-place tensor's bytes are the file's own, not a copy.
        let file_bytes = std::fs::read(&file.0)?;
        let size = in_place.storage_size_in_bytes();
        assert_eq!(
            &file_bytes[start..start + size],
            &in_place.data()?[..],
            "{name}"
        );
        let expected = QMatMul::from_qtensor(read)?.forward(&input)?;
        let got = QMatMul::from_qtensor(in_place)?.forward(&input)?;
        let (expected, got) = (expected.to_vec2::<f32>()?, got.to_vec2::<f32>()?);
        assert_eq!(got, expected, "{name}: products differ");
    }
    Ok(())
}

#[test]
fn a_tensor_beyond_the_file_is_an_error_and_a_misaligned_one_is_copied() -> Result<()> {
    let weights = Tensor::randn(0f32, 1.0, (4, 256), &Device::Cpu)?;
    let q = QTensor::quantize(&weights, GgmlDType::F32)?;
    let file = write_gguf("bounds", &[("w", &q)])?;
    let reader = std::fs::File::open(&file.0)?;
    let map = mapped::MappedFile::new(&reader)?;
    let len = map.len();

    // A hostile index: the tensor's data said to start near the end, or past it, or so far that
    // start + size overflows.
    for start in [len - 16, len + 4096, usize::MAX - 8] {
        let err = mapped::tensor_from_map(&map, start, GgmlDType::F32, vec![4, 256])
            .err()
            .unwrap_or_else(|| panic!("a tensor at byte {start} of {len} was accepted"));
        assert!(err.to_string().contains("outside"), "{err}");
    }

    // Dimensions whose product overflows, and a byte size that does.
    let err = mapped::tensor_from_map(&map, 64, GgmlDType::F32, vec![usize::MAX / 2, 4])
        .err()
        .expect("overflowing dimensions were accepted");
    assert!(err.to_string().contains("too large"), "{err}");
    let err = mapped::tensor_from_map(&map, 64, GgmlDType::F32, vec![usize::MAX / 2])
        .err()
        .expect("a byte size that overflows was accepted");
    assert!(err.to_string().contains("outside"), "{err}");

    // One byte off an f32's alignment: still the right bytes, through a copy.
    let start = 33;
    let t = mapped::tensor_from_map(&map, start, GgmlDType::F32, vec![2, 32])?;
    let file_bytes = std::fs::read(&file.0)?;
    assert_eq!(&t.data()?[..], &file_bytes[start..start + 2 * 32 * 4]);
    Ok(())
}
