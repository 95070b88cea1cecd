//! NumPy `.npy` time series, read with the `npyz` crate: a 2-D array of timepoints × regions in C
//! or Fortran order, of `f8`, `f4`, `i8` or `i4` in either byte order.
//!
//! The shape in the header is checked against the value limit before any data is read, so a
//! crafted header (a huge shape, a size that overflows) is an error, never an allocation or a
//! panic.

use std::io;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use broker_schemas::limits::MAX_VALUES_PER_SAMPLE;
use npyz::{NpyFile, Order};

use super::Timeseries;

/// Bytes of a `.npy` file beyond its values: the largest header NumPy writes is far below this.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Reads a NumPy `.npy` file holding a 2-D array (T × R): a time series without a text round
/// trip.
pub fn read_npy(path: &Path) -> anyhow::Result<Timeseries> {
    let file = path.display();
    let size = std::fs::metadata(path)
        .with_context(|| format!("Failed to read {file}"))?
        .len();
    let largest = MAX_VALUES_PER_SAMPLE as u64 * 8 + MAX_HEADER_BYTES;
    if size > largest {
        bail!(
            "{file}: {size} bytes, more than a time series within the limit of \
             {MAX_VALUES_PER_SAMPLE} values can take"
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("Failed to read {file}"))?;
    let npy = NpyFile::new(&bytes[..]).map_err(|e| anyhow!("{file}: not a .npy file: {e}"))?;
    let shape = npy.shape().to_vec();
    let [timepoints, regions] = shape[..] else {
        bail!("{file}: expected a 2-D array (timepoints × regions), found shape {shape:?}");
    };
    let n = timepoints
        .checked_mul(regions)
        .filter(|&n| n <= MAX_VALUES_PER_SAMPLE as u64)
        .ok_or_else(|| {
            anyhow!(
                "{file}: shape {timepoints} × {regions} is more than the limit of \
                 {MAX_VALUES_PER_SAMPLE} values per sample"
            )
        })?;
    // Within the limit, so both fit a usize.
    let (timepoints, regions, n) = (timepoints as usize, regions as usize, n as usize);
    let order = npy.order();
    let descr = npy.dtype().descr();
    let stored = match read_values(npy) {
        Ok(Some(values)) => values,
        Ok(None) => bail!("{file}: unsupported dtype `{descr}`; expected f8, f4, i8 or i4"),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            bail!("{file}: the data is shorter than its shape {timepoints} × {regions}")
        }
        Err(e) => bail!("{file}: cannot read the data: {e}"),
    };
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let (row, column) = (i / regions, i % regions);
        // Fortran order stores column by column.
        let at = match order {
            Order::C => i,
            Order::Fortran => column * timepoints + row,
        };
        let v = stored[at] as f32;
        if !v.is_finite() {
            bail!(
                "{file}: row {}, column {} is not a finite number",
                row + 1,
                column + 1
            );
        }
        values.push(v);
    }
    Ok((timepoints, regions, values))
}

/// The array's values as `f64`, or `None` for a dtype other than float or integer of 4 or 8
/// bytes.
fn read_values(npy: NpyFile<&[u8]>) -> io::Result<Option<Vec<f64>>> {
    let npy = match npy.try_data::<f64>() {
        Ok(values) => return values.collect::<io::Result<_>>().map(Some),
        Err(npy) => npy,
    };
    let npy = match npy.try_data::<f32>() {
        Ok(values) => {
            return values
                .map(|v| v.map(f64::from))
                .collect::<io::Result<_>>()
                .map(Some)
        }
        Err(npy) => npy,
    };
    let npy = match npy.try_data::<i64>() {
        // Beyond 2^53 an integer loses precision; f32 loses it sooner.
        Ok(values) => {
            return values
                .map(|v| v.map(|v| v as f64))
                .collect::<io::Result<_>>()
                .map(Some)
        }
        Err(npy) => npy,
    };
    match npy.try_data::<i32>() {
        Ok(values) => values
            .map(|v| v.map(f64::from))
            .collect::<io::Result<_>>()
            .map(Some),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use crate::load::test_support::*;
    use crate::load::*;

    /// A `.npy` file as NumPy writes it (version 1.0, header padded to 64 bytes).
    fn npy(descr: &str, shape: (u64, u64), payload: &[u8]) -> Vec<u8> {
        npy_ordered(descr, shape, false, payload)
    }

    fn npy_ordered(descr: &str, shape: (u64, u64), fortran: bool, payload: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({}, {}), }}",
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

    #[test]
    fn reads_fortran_order_and_big_endian() {
        let dir = TempDir::new();
        let path = dir.0.join("f.npy");
        // The 3 × 2 matrix [[1, 2], [3, 4], [5, 6]] stored column by column.
        let columns: Vec<u8> = [1.0f32, 3.0, 5.0, 2.0, 4.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&path, npy_ordered("<f4", (3, 2), true, &columns)).unwrap();
        assert_eq!(
            read_timeseries(&path).unwrap(),
            (3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        let big: Vec<u8> = [1i64, -2].iter().flat_map(|v| v.to_be_bytes()).collect();
        std::fs::write(&path, npy(">i8", (1, 2), &big)).unwrap();
        assert_eq!(read_timeseries(&path).unwrap(), (1, 2, vec![1.0, -2.0]));
    }

    #[test]
    fn a_crafted_header_is_an_error_not_a_panic() {
        let dir = TempDir::new();
        let path = dir.0.join("crafted.npy");
        let payload = 1.0f64.to_le_bytes();
        // T × R overflows 64 bits; then a product that fits but is far beyond the limit.
        for shape in [(1 << 33, 1 << 33), (u64::MAX, 2), (1 << 20, 1 << 20)] {
            std::fs::write(&path, npy("<f8", shape, &payload)).unwrap();
            let error = error_of(read_timeseries(&path));
            assert!(
                error.contains("more than the limit of 480000 values"),
                "{shape:?}: {error}"
            );
        }
    }
}
