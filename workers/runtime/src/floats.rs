//! Float arrays stored as `bytea`: big-endian IEEE 754 binary32, four bytes per value, the
//! layout PostgreSQL's `float4send` writes. `samples.values` and `features.values` are stored so
//! (migrations 0009, 0010): a `real[]` goes through PostgreSQL's per-element I/O functions on
//! every read and write, which cost more than anything else the database did for a time series.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

/// Values to write into a `bytea` column.
#[derive(Debug, Clone, Copy)]
pub struct Floats<'a>(pub &'a [f32]);

impl ToSql for Floats<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // Zero-filled, then overwritten in place: a loop the compiler turns into vector byte
        // swaps, where `put_f32` checks the capacity value by value.
        let start = out.len();
        out.resize(start + self.0.len() * 4, 0);
        for (bytes, v) in out[start..].chunks_exact_mut(4).zip(self.0) {
            bytes.copy_from_slice(&v.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    accepts!(BYTEA);
    to_sql_checked!();
}

/// Values read from a `bytea` column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatVec(pub Vec<f32>);

impl<'a> FromSql<'a> for FloatVec {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        if raw.len() % 4 != 0 {
            return Err(format!(
                "{} bytes are not a whole number of float4 values",
                raw.len()
            )
            .into());
        }
        // Zero-filled, then overwritten in place: vector byte swaps, like `to_sql`.
        let mut values = vec![0.0; raw.len() / 4];
        for (v, bytes) in values.iter_mut().zip(raw.chunks_exact(4)) {
            *v = f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        Ok(FloatVec(values))
    }

    accepts!(BYTEA);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_float4send_bytes_and_reads_them_back() {
        let values = [1.0f32, -2.5, f32::MIN_POSITIVE, 0.0];
        let mut buf = BytesMut::new();
        Floats(&values).to_sql(&Type::BYTEA, &mut buf).unwrap();
        // float4send(1.0) = \x3f800000, float4send(-2.5) = \xc0200000
        assert_eq!(&buf[..8], &[0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0]);
        assert_eq!(FloatVec::from_sql(&Type::BYTEA, &buf).unwrap().0, values);
        assert!(FloatVec::from_sql(&Type::BYTEA, &buf[..5]).is_err());
    }
}
