//! Deterministic random and quasi-random numbers, seeded per pixel.
//!
//! Every pixel owns a [`Sampler`] derived only from (scene seed, frame, x, y),
//! so a pixel's value never depends on which other pixels were rendered
//! before it: tiles rendered on different machines assemble into exactly the
//! frame a single machine would have produced.

/// PCG32 (O'Neill 2014, XSH-RR variant): tiny state, good statistical
/// quality, and only 64-bit integer arithmetic, which Wasm executes natively.
#[derive(Clone, Debug)]
pub(crate) struct Pcg32 {
    state: u64,
    increment: u64,
}

const PCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;

impl Pcg32 {
    /// A generator for `seed` on stream `stream` (streams are independent
    /// sequences), following the reference `pcg32_srandom_r`.
    pub(crate) fn new(seed: u64, stream: u64) -> Pcg32 {
        let mut rng = Pcg32 {
            state: 0,
            increment: (stream << 1) | 1,
        };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    /// The generator for one pixel of one frame.
    pub(crate) fn for_pixel(seed: u64, frame: u32, x: u32, y: u32) -> Pcg32 {
        let frame_key = splitmix64(seed ^ splitmix64(u64::from(frame)));
        let pixel_key = splitmix64(frame_key ^ ((u64::from(y) << 32) | u64::from(x)));
        Pcg32::new(pixel_key, frame_key)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old
            .wrapping_mul(PCG_MULTIPLIER)
            .wrapping_add(self.increment);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rotation = (old >> 59) as u32;
        xorshifted.rotate_right(rotation)
    }

    /// A uniform number in `[0, 1)` with 32 bits of randomness.
    pub(crate) fn next_f64(&mut self) -> f64 {
        f64::from(self.next_u32()) * (1.0 / 4_294_967_296.0)
    }
}

/// How many 2D sample pairs per path come from the quasi-random sequence:
/// enough for the sub-pixel position, the lens and the first two bounces
/// with a couple of lights. Later pairs, where stratification no longer
/// shows through the noise, come from the cheaper plain generator.
const QMC_PAIRS_MAX: usize = 12;

/// The numbers one pixel's paths consume.
///
/// 2D pairs (sub-pixel position, lens position, a point on each light, the
/// bounce direction...) come from an Owen-scrambled Sobol sequence (Burley
/// 2020, "Practical Hash-based Owen Scrambling"): the pixel's samples then
/// cover each 2D domain far more evenly than independent random numbers do,
/// for any sample count, so soft shadows and edges converge several times
/// faster. Each pair gets its own scramble and index shuffle, so different
/// pairs are not correlated with one another. Every scrambled point is still
/// uniformly distributed, so a path whose pairs serve different purposes
/// than its neighbours' (one hit glass, one did not) stays unbiased.
#[derive(Clone, Debug)]
pub(crate) struct Sampler {
    rng: Pcg32,
    /// Per pair: seeds of the index shuffle and of the two coordinates'
    /// scrambles, drawn once per pixel.
    seeds: [[u32; 3]; QMC_PAIRS_MAX],
    /// The current sample's index, bit-reversed.
    sample_reversed: u32,
    pair: usize,
}

impl Sampler {
    /// The sampler for one pixel of one frame.
    pub(crate) fn for_pixel(seed: u64, frame: u32, x: u32, y: u32) -> Sampler {
        let mut rng = Pcg32::for_pixel(seed, frame, x, y);
        let mut seeds = [[0; 3]; QMC_PAIRS_MAX];
        for pair in &mut seeds {
            *pair = [rng.next_u32(), rng.next_u32(), rng.next_u32()];
        }
        Sampler {
            rng,
            seeds,
            sample_reversed: 0,
            pair: 0,
        }
    }

    /// Starts sample number `sample` of the pixel.
    pub(crate) fn start_sample(&mut self, sample: u32) {
        self.sample_reversed = sample.reverse_bits();
        self.pair = 0;
    }

    /// A uniform number in `[0, 1)` for one-off decisions (Fresnel choice,
    /// Russian roulette).
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// A uniform point in `[0, 1)²`, stratified across the pixel's samples.
    pub(crate) fn next_2d(&mut self) -> (f64, f64) {
        let Some(&[shuffle, scramble_x, scramble_y]) = self.seeds.get(self.pair) else {
            return (self.rng.next_f64(), self.rng.next_f64());
        };
        self.pair += 1;
        // Owen-scrambling the index shuffles the samples among themselves.
        // The first 2^m samples land on an aligned block of 2^m Sobol
        // indices, which is itself a well-stratified point set; keeping 16
        // bits (enough for the largest sample count) keeps the block and the
        // table lookups below small.
        let index = laine_karras_permutation(self.sample_reversed, shuffle).reverse_bits() & 0xffff;
        // x is the bit-reversed index (the first Sobol dimension); Owen
        // scrambling works on reversed bits, so reversing twice cancels.
        let x = laine_karras_permutation(index, scramble_x).reverse_bits();
        let y_reversed = SOBOL_SECOND_REVERSED[0][(index & 0xff) as usize]
            ^ SOBOL_SECOND_REVERSED[1][(index >> 8) as usize];
        let y = laine_karras_permutation(y_reversed, scramble_y).reverse_bits();
        let scale = 1.0 / 4_294_967_296.0;
        (f64::from(x) * scale, f64::from(y) * scale)
    }
}

/// The second Sobol dimension, bit-reversed, for the low and the high byte
/// of a 16-bit index. The dimension is linear over GF(2), so the value for
/// an index is the XOR of its two bytes' entries.
static SOBOL_SECOND_REVERSED: [[u32; 256]; 2] = [sobol_second_table(0), sobol_second_table(8)];

const fn sobol_second_table(shift: u32) -> [u32; 256] {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = sobol_second((byte as u32) << shift).reverse_bits();
        byte += 1;
    }
    table
}

/// The second dimension of the Sobol sequence (direction numbers
/// `v_k = v_{k-1} ^ (v_{k-1} >> 1)`); the first is the bit-reversed index.
const fn sobol_second(mut index: u32) -> u32 {
    let mut result = 0;
    let mut direction = 1u32 << 31;
    while index != 0 {
        if index & 1 != 0 {
            result ^= direction;
        }
        index >>= 1;
        direction ^= direction >> 1;
    }
    result
}

/// A hash in which each bit depends only on the bits below it (Laine and
/// Karras 2011; constants from Burley 2020). Applied to bit-reversed values
/// it is an Owen scramble: a random permutation that keeps every
/// power-of-two stratum a stratum.
fn laine_karras_permutation(mut x: u32, seed: u32) -> u32 {
    x = x.wrapping_add(seed);
    x ^= x.wrapping_mul(0x6c50_b47c);
    x ^= x.wrapping_mul(0xb82f_1e52);
    x ^= x.wrapping_mul(0xc7af_e638);
    x ^= x.wrapping_mul(0x8d22_f6e6);
    x
}

/// SplitMix64's finalizer (Steele et al. 2014): a bijective mixer that turns
/// structured keys such as consecutive pixel coordinates into unrelated seeds.
fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcg32_matches_reference_sequence() {
        // First outputs of the reference pcg32-demo (seed 42, stream 54).
        let mut rng = Pcg32::new(42, 54);
        let expected = [0xa15c_02b7, 0x7b47_f409, 0xba1d_3330, 0x83d2_f293];
        for value in expected {
            assert_eq!(rng.next_u32(), value);
        }
    }

    #[test]
    fn neighbouring_pixels_get_different_sequences() {
        let a = Pcg32::for_pixel(1, 0, 10, 10).next_u32();
        let b = Pcg32::for_pixel(1, 0, 11, 10).next_u32();
        let c = Pcg32::for_pixel(1, 1, 10, 10).next_u32();
        assert!(a != b && a != c && b != c);
    }

    #[test]
    fn sobol_table_matches_direct_computation() {
        for index in [0u32, 1, 2, 3, 255, 256, 257, 4097, 0xffff] {
            let from_table = SOBOL_SECOND_REVERSED[0][(index & 0xff) as usize]
                ^ SOBOL_SECOND_REVERSED[1][(index >> 8) as usize];
            assert_eq!(
                from_table,
                sobol_second(index).reverse_bits(),
                "index {index}"
            );
        }
    }

    #[test]
    fn sampler_stratifies_each_pair() {
        // 16 Owen-scrambled Sobol points put exactly one point in each cell
        // of a 4x4 grid (a (0,4,2)-net property that scrambling preserves).
        let mut sampler = Sampler::for_pixel(3, 1, 5, 9);
        for pair in 0..3 {
            let mut cells = [0u32; 16];
            for sample in 0..16 {
                sampler.start_sample(sample);
                for _ in 0..pair {
                    sampler.next_2d();
                }
                let (u, v) = sampler.next_2d();
                assert!((0.0..1.0).contains(&u) && (0.0..1.0).contains(&v));
                cells[(u * 4.0) as usize * 4 + (v * 4.0) as usize] += 1;
            }
            assert_eq!(cells, [1; 16], "pair {pair}");
        }
    }
}
