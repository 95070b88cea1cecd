//! NumPy `.npy` time series.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use broker_schemas::limits::MAX_VALUES_PER_SAMPLE;

use super::Timeseries;

/// Reads a NumPy `.npy` file holding a 2-D array (T × R, C order; little-endian `f8`, `f4`, `i8`
/// or `i4`): a time series without a text round trip.
pub fn read_npy(path: &Path) -> anyhow::Result<Timeseries> {
    let file = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("Failed to read {file}"))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{file}: not a .npy file (no \\x93NUMPY magic)");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("{file}: unsupported .npy version {v}"),
    };
    let header = std::str::from_utf8(bytes.get(start..start + header_len).unwrap_or_default())
        .with_context(|| format!("{file}: the .npy header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))?;
        let rest = header[at + key.len() + 2..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| anyhow!("{file}: the .npy header has no dtype"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        bail!("{file}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
    }
    let shape: Vec<usize> = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("{file}: the .npy header has no shape"))?;
    let [timepoints, regions] = shape[..] else {
        bail!("{file}: expected a 2-D array (timepoints × regions), found shape {shape:?}");
    };
    let data = &bytes[start + header_len..];
    let n = timepoints * regions;
    if n > MAX_VALUES_PER_SAMPLE {
        bail!("{file}: {n} values, more than the limit of {MAX_VALUES_PER_SAMPLE} per sample");
    }
    let width = match descr {
        "<f8" | "<i8" => 8,
        "<f4" | "<i4" => 4,
        other => bail!("{file}: unsupported dtype `{other}`; expected <f8, <f4, <i8 or <i4"),
    };
    if data.len() < n * width {
        bail!("{file}: the data is shorter than its shape {timepoints} × {regions}");
    }
    let mut values = Vec::with_capacity(n);
    for (i, chunk) in data[..n * width].chunks_exact(width).enumerate() {
        let v = match descr {
            "<f8" => f64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f32,
            "<i8" => i64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f32,
            "<f4" => f32::from_le_bytes(chunk.try_into().unwrap_or_default()),
            _ => i32::from_le_bytes(chunk.try_into().unwrap_or_default()) as f32,
        };
        if !v.is_finite() {
            bail!(
                "{file}: row {}, column {} is not a finite number",
                i / regions + 1,
                i % regions + 1
            );
        }
        values.push(v);
    }
    Ok((timepoints, regions, values))
}

#[cfg(test)]
mod tests {
    use crate::load::test_support::*;
    use crate::load::*;

    /// A `.npy` file as NumPy writes it (version 1.0, header padded to 64 bytes).
    fn npy(descr: &str, shape: (usize, usize), payload: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}",
            shape.0, shape.1
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_npy_time_series() {
        let dir = TempDir::new();
        let values = [1.0f64, 2.0, 3.5, -4.0, 5.0, 6.25];
        let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let path = dir.0.join("sub-07.npy");
        std::fs::write(&path, npy("<f8", (3, 2), &payload)).unwrap();
        let (t, r, got) = read_timeseries(&path).unwrap();
        assert_eq!((t, r), (3, 2));
        assert_eq!(got, vec![1.0, 2.0, 3.5, -4.0, 5.0, 6.25]);
        assert_eq!(subject_of(&path).unwrap(), "sub-07");
        let ints: Vec<u8> = [7i32, 8].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, npy("<i4", (1, 2), &ints)).unwrap();
        assert_eq!(read_timeseries(&path).unwrap(), (1, 2, vec![7.0, 8.0]));
        std::fs::write(&path, npy("<f8", (3, 2), &payload[..16])).unwrap();
        assert!(read_timeseries(&path)
            .unwrap_err()
            .to_string()
            .contains("shorter"));
        std::fs::write(&path, npy("<c16", (1, 1), &payload)).unwrap();
        assert!(read_timeseries(&path)
            .unwrap_err()
            .to_string()
            .contains("dtype"));
        std::fs::write(&path, b"not numpy").unwrap();
        assert!(read_timeseries(&path).is_err());
    }
}
