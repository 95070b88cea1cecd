//! Text → features: hashed word uni- and bi-gram term frequencies, L2-normalised.
//!
//! A document is lower-cased and split into words (runs of alphanumeric characters); every word
//! and every pair of neighbouring words is hashed (FNV-1a, 64 bit, stable across platforms and
//! releases) into one of [`DIMENSION`] buckets with a sign from another hash bit (as
//! scikit-learn's `HashingVectorizer(alternate_sign=True)`, so collisions cancel on average).
//! The counts are divided by the vector's Euclidean norm; an empty document is all zeros.

/// Buckets of the hashed vector (2¹²).
pub const DIMENSION: usize = 4096;

/// The extractor's version, stored with its features.
pub const VERSION: i32 = 1;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The words of a document, lower-cased.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Hashed uni+bi-gram term frequencies of `text`, L2-normalised, [`DIMENSION`] long.
pub fn extract(text: &str) -> Vec<f32> {
    let words = words(text);
    let mut v = vec![0.0f64; DIMENSION];
    let mut add = |term: &str| {
        let h = fnv1a(term.as_bytes());
        let bucket = (h % DIMENSION as u64) as usize;
        let sign = if (h >> 63) & 1 == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign;
    };
    for w in &words {
        add(w);
    }
    for pair in words.windows(2) {
        add(&format!("{} {}", pair[0], pair[1]));
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v.into_iter().map(|x| x as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unigrams_and_bigrams_normalised() {
        let v = extract("The cat sat. the CAT!");
        assert_eq!(v.len(), DIMENSION);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        // 3 distinct words + 4 bigrams ("the cat" twice): "the" and "cat" count 2.
        let nonzero = v.iter().filter(|x| **x != 0.0).count();
        assert!((5..=6).contains(&nonzero), "{nonzero}");
        assert_eq!(
            extract("the cat sat the cat"),
            v,
            "case and punctuation do not matter"
        );
        assert_ne!(
            extract("cat the sat the cat"),
            v,
            "word order matters through bigrams"
        );
        assert!(extract(" ,.; ").iter().all(|x| *x == 0.0));
        assert_eq!(
            words("Resting-state fMRI, 2 sites"),
            vec!["resting", "state", "fmri", "2", "sites"]
        );
    }

    #[test]
    fn hashing_is_stable() {
        // Pinned: stored features must not change meaning between releases.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
