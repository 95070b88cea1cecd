//! The learning algorithms, each a focused implementation over [`crate::matrix::Matrix`] with
//! scikit-learn's objective, defaults and tie-breaking, so that results are comparable with it
//! and every fitted model is plain serialisable data (ARCHITECTURE.md, "Why our own solvers").

// Index loops over several parallel arrays read more plainly than zipped iterators here.
#![allow(clippy::needless_range_loop)]

pub mod avx;
pub mod decompose;
pub mod lbfgs;
pub mod linear;
pub mod neighbours;
pub mod svm;
pub mod tree;
