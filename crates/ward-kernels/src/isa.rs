//! Which vector instructions the kernels run on: the best the CPU has, detected at run
//! time (the workspace compiles for the x86-64 baseline, SSE2, so that one binary runs on
//! every x86-64 host). A test may cap it on its own thread, to hold each vector instance
//! to the portable loops' bits on a CPU that has it.

/// An instruction set a kernel has an instance for, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The portable loops, compiled for the baseline target.
    Portable,
    /// AVX2 with FMA (x86-64-v3: Intel since Haswell, AMD since Zen 1): 8 lanes, 16
    /// registers.
    Avx2,
    /// AVX-512F: 16 lanes, 32 registers, masked loads and stores.
    Avx512,
}

#[cfg(test)]
thread_local! {
    /// The best instruction set a test lets its thread use ([`with_isa`]).
    static CEILING: std::cell::Cell<Isa> = const { std::cell::Cell::new(Isa::Avx512) };
}

impl Isa {
    /// The best instruction set of this CPU.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// The instruction set the kernels use on this thread: [`Self::detected`], but in a
    /// test that capped it lower.
    #[inline]
    pub fn current() -> Isa {
        #[cfg(test)]
        {
            Isa::detected().min(CEILING.with(std::cell::Cell::get))
        }
        #[cfg(not(test))]
        {
            Isa::detected()
        }
    }

    /// Whether ward's own kernels have vector instances here: without them (a CPU with
    /// neither AVX2 + FMA nor AVX-512, or another architecture) their portable loops are
    /// a reference, several times slower than a tuned library's kernels, and a caller
    /// that has one runs those instead.
    pub fn has_vector_kernels() -> bool {
        Isa::detected() > Isa::Portable
    }

    /// The vector instruction sets this CPU has, for a test to run each in turn.
    #[cfg(test)]
    pub(crate) fn vector_sets() -> Vec<Isa> {
        [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&isa| isa <= Isa::detected())
            .collect()
    }
}

/// Runs `f` with the kernels on this thread capped at `ceiling`.
#[cfg(test)]
pub(crate) fn with_isa<R>(ceiling: Isa, f: impl FnOnce() -> R) -> R {
    let before = CEILING.with(|c| c.replace(ceiling));
    let r = f();
    CEILING.with(|c| c.set(before));
    r
}

/// Runs `f` with the kernels capped at the portable loops, then at each vector
/// instruction set this CPU has, and asserts that each vector instance's result (a
/// test returns bits) is the portable one, which it returns.
#[cfg(test)]
pub(crate) fn same_on_every_isa<R: PartialEq + std::fmt::Debug>(
    what: &str,
    f: impl Fn() -> R,
) -> R {
    let portable = with_isa(Isa::Portable, &f);
    for isa in Isa::vector_sets() {
        assert_eq!(with_isa(isa, &f), portable, "{what} on {isa:?}");
    }
    portable
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cap holds on its thread only while its closure runs, never lifts the CPU's
    /// own set, and the vector sets a test runs are the CPU's.
    #[test]
    fn a_cap_lowers_the_current_set_for_its_closure_only() {
        let detected = Isa::detected();
        assert_eq!(Isa::current(), detected);
        assert_eq!(with_isa(Isa::Portable, Isa::current), Isa::Portable);
        assert_eq!(with_isa(Isa::Avx512, Isa::current), detected);
        let nested = with_isa(Isa::Avx2, || with_isa(Isa::Portable, Isa::current));
        assert_eq!(nested, Isa::Portable);
        assert_eq!(Isa::current(), detected);
        let sets = Isa::vector_sets();
        assert!(sets
            .iter()
            .all(|&isa| isa > Isa::Portable && isa <= detected));
        assert_eq!(sets.is_empty(), !Isa::has_vector_kernels());
        // Another thread keeps the detected set while this one is capped.
        with_isa(Isa::Portable, || {
            assert_eq!(std::thread::spawn(Isa::current).join().ok(), Some(detected));
        });
    }
}
