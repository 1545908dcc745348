//! The VRAM budget (the user's, the adapter's, or a default) and byte counts as text.

use serde::Serialize;

use super::DEFAULT_BUDGET;
use crate::error::{Error, Result};

/// Where the budget came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BudgetSource {
    /// `--vram-budget` / `vram_budget`.
    User,
    /// What the adapter reported.
    Adapter,
    /// [`DEFAULT_BUDGET`]: neither was available.
    Default,
}

/// A VRAM budget and its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub bytes: u64,
    pub source: BudgetSource,
}

impl Budget {
    /// The budget: the user's when given (it always wins), else the adapter's figure, else
    /// [`DEFAULT_BUDGET`]. The adapter figure should be the memory available to this process
    /// (Vulkan's `VK_EXT_memory_budget` heap budget minus usage where present, the device-local
    /// heap size otherwise); a reported size of 0 counts as unknown.
    pub fn resolve(user: Option<u64>, adapter: Option<u64>) -> Budget {
        match (user, adapter.filter(|&b| b > 0)) {
            (Some(bytes), _) => Budget { bytes, source: BudgetSource::User },
            (None, Some(bytes)) => Budget { bytes, source: BudgetSource::Adapter },
            (None, None) => Budget { bytes: DEFAULT_BUDGET, source: BudgetSource::Default },
        }
    }

    /// One line for the user saying what budget is used and why.
    pub fn describe(&self) -> String {
        let b = fmt_bytes(self.bytes);
        match self.source {
            BudgetSource::User => format!("VRAM budget {b} (given)"),
            BudgetSource::Adapter => format!("VRAM budget {b} (reported by the adapter)"),
            BudgetSource::Default => format!(
                "VRAM budget {b}: no budget was given and the adapter does not report its memory, so the \
                 default is assumed; set it with --vram-budget (or `vram_budget`)"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes as text

/// Parse a byte count: a plain number of bytes (`6000000000`), or a number (fractions allowed)
/// with a unit, case-insensitive, spaces allowed: `KiB`/`MiB`/`GiB`/`TiB` are powers of 1024,
/// `KB`/`MB`/`GB`/`TB` powers of 1000, and the bare `K`/`M`/`G`/`T` powers of 1024 (as in `6g`).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let bad = |why: &str| Error::Invalid(format!("`{text}` is not a byte count ({why}; e.g. 6GiB, 512MiB, 6 GB)"));
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    if number.is_empty() {
        return Err(bad("no number"));
    }
    let scale = unit_scale(unit).ok_or_else(|| bad(&format!("unknown unit `{unit}`")))?;
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(scale).ok_or_else(|| bad("too large"));
    }
    let x: f64 = number.parse().map_err(|_| bad("bad number"))?;
    let bytes = (x * scale as f64).round();
    // `x` is finite and non-negative here (the number is digits and dots only).
    if bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

fn unit_scale(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    })
}

/// Bytes for people: `3.80 GiB`, `118.3 MiB`, `16.0 KiB`, `12 B`.
pub fn fmt_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}
