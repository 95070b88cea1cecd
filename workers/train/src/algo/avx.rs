//! Ending the wide-register state faer's kernels leave behind, so that the scalar code after
//! them runs at full speed.
//!
//! faer's matrix kernels use AVX; on x86 processors that penalise mixing (Intel Xeon since
//! Skylake), the upper halves of the vector registers they leave in use make the plain scalar
//! arithmetic and libm's `exp` that run next on the same thread wait on every instruction. On a
//! 5th-generation Xeon, 20 million `exp` calls took 0.1 s before one 300 × 300 faer product and
//! 3.4 s after it, until a `vzeroupper`. The compiler puts a `vzeroupper` at the end of every
//! function compiled for AVX that used the wide registers, so [`clear_upper`] runs such a
//! function through pulp, faer's own SIMD layer, with no `unsafe` here. Elsewhere (AMD, other
//! architectures) it costs a feature check.
//!
//! Every estimator or step that calls faer calls [`clear_upper`] before its own scalar work
//! continues: ridge, PCA, KNN.

/// Ends the wide-register state on this thread (see the module docs).
pub fn clear_upper() {
    pulp::Arch::new().dispatch(TouchWide);
}

/// Uses one wide register, so that its function ends with a `vzeroupper`.
struct TouchWide;

impl pulp::WithSimd for TouchWide {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        std::hint::black_box(simd.splat_f64s(0.0));
    }
}
