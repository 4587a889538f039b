//! Which of core's kernels this CPU can run, detected at run time.

use picogpt_core::Kernels;

/// The kernels to use: the best this CPU has, or a lower level (to compare, or to test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelLevel {
    /// The fastest the CPU supports.
    #[default]
    Best,
    /// core's plain loops (what a board without SIMD runs).
    Portable,
    /// x86-64 AVX2 + F16C.
    Avx2,
    /// x86-64 AVX-512 (F, BW, VL) with AVX2 + F16C.
    Avx512,
}

/// Why a kernel level cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("this CPU cannot run the {level:?} kernels (it has: {has})")]
pub struct Unsupported {
    /// The level asked for.
    pub level: KernelLevel,
    /// What the CPU offers.
    pub has: String,
}

/// The kernels for `level` on this CPU.
pub fn kernels(level: KernelLevel) -> Result<Kernels, Unsupported> {
    imp::kernels(level)
}

/// The SIMD features detected, as a short list (`avx2 f16c avx512f …`, or `none`).
pub fn features() -> String {
    imp::features()
}

/// Every level this CPU can run, portable first.
pub fn levels() -> Vec<KernelLevel> {
    [KernelLevel::Portable, KernelLevel::Avx2, KernelLevel::Avx512]
        .into_iter()
        .filter(|&l| kernels(l).is_ok())
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use picogpt_core::Kernels;
    use picogpt_core::kernels::x86::{self, Features};

    use super::{KernelLevel, Unsupported};

    fn detected() -> Features {
        Features {
            avx2: is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"),
            avx512: is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl"),
        }
    }

    pub fn features() -> String {
        let names = [
            ("avx2", is_x86_feature_detected!("avx2")),
            ("f16c", is_x86_feature_detected!("f16c")),
            ("fma", is_x86_feature_detected!("fma")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512bw", is_x86_feature_detected!("avx512bw")),
            ("avx512vl", is_x86_feature_detected!("avx512vl")),
            ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
        ];
        let has: Vec<&str> = names.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        if has.is_empty() { "none".into() } else { has.join(" ") }
    }

    pub fn kernels(level: KernelLevel) -> Result<Kernels, Unsupported> {
        let cpu = detected();
        let wanted = match level {
            KernelLevel::Best => cpu,
            KernelLevel::Portable => Features::default(),
            KernelLevel::Avx2 => Features { avx2: true, avx512: false },
            KernelLevel::Avx512 => Features { avx2: true, avx512: true },
        };
        if (wanted.avx2 && !cpu.avx2) || (wanted.avx512 && !cpu.avx512) {
            return Err(Unsupported { level, has: features() });
        }
        // SAFETY: every feature in `wanted` was detected on this CPU.
        Ok(unsafe { x86::kernels(wanted) })
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use picogpt_core::Kernels;

    use super::{KernelLevel, Unsupported};

    pub fn features() -> String {
        "none".into()
    }

    pub fn kernels(level: KernelLevel) -> Result<Kernels, Unsupported> {
        match level {
            KernelLevel::Best | KernelLevel::Portable => Ok(Kernels::native()),
            _ => Err(Unsupported { level, has: features() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_and_best_always_work() {
        assert_eq!(kernels(KernelLevel::Portable).unwrap().name, "portable");
        assert!(kernels(KernelLevel::Best).is_ok());
        assert_eq!(levels()[0], KernelLevel::Portable);
    }
}
