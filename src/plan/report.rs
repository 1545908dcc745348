//! A plan as the table `plan` prints: where each part goes, its VRAM and host bytes, the totals
//! and what was given up to fit.

use std::fmt;

use super::{fmt_bytes, LayerPlan, Placement, Plan, Strategy};

/// Consecutive layers with the same placement, for the table: `(first, last, placement)`.
fn layer_runs(layers: &[LayerPlan]) -> Vec<(usize, usize, Placement)> {
    let mut runs: Vec<(usize, usize, Placement)> = Vec::new();
    for l in layers {
        match runs.last_mut() {
            Some(run) if run.2 == l.placement => run.1 = l.index,
            _ => runs.push((l.index, l.index, l.placement)),
        }
    }
    runs
}

/// One row of the table: what, where, VRAM bytes, host bytes (`None` prints as `-`).
fn row(f: &mut fmt::Formatter<'_>, what: &str, place: &str, vram: Option<u64>, host: Option<u64>) -> fmt::Result {
    let cell = |b: Option<u64>| b.map_or("-".to_string(), fmt_bytes);
    writeln!(f, "  {what:<34} {place:<11} {:>11} {:>11}", cell(vram), cell(host))
}

impl Plan {
    fn write_layers(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (a, b, p) in layer_runs(&self.layers) {
            let run = &self.layers[a..=b];
            let w: u64 = run.iter().map(|l| l.weight_bytes).sum();
            let kv: u64 = run.iter().map(|l| l.kv_bytes).sum();
            let label = format!("layers {a}-{b} ({}): weights", b - a + 1);
            let kv_label = match self.sequences {
                1 => format!("layers {a}-{b}: KV cache"),
                n => format!("layers {a}-{b}: KV cache × {n} sequences"),
            };
            match p {
                Placement::Gpu => {
                    row(f, &label, "GPU", Some(w), None)?;
                    row(f, &kv_label, "GPU", Some(kv), None)?;
                }
                Placement::Cpu => {
                    row(f, &label, "CPU (mmap)", None, Some(w))?;
                    row(f, &kv_label, "CPU", None, Some(kv))?;
                }
            }
        }
        Ok(())
    }

    fn write_globals(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.head_tied {
            row(f, "token embedding", "CPU (mmap)", None, Some(self.embedding_bytes))?;
        }
        let head = if self.head_tied { "output head (tied embedding)" } else { "output head" };
        match self.head {
            Placement::Gpu => row(f, head, "GPU", Some(self.head_bytes), None)?,
            Placement::Cpu => row(f, head, "CPU (mmap)", None, Some(self.head_bytes))?,
        }
        if self.globals_bytes > 0 {
            row(f, "other tensors (rope_freqs)", "GPU", Some(self.globals_bytes), None)?;
        }
        Ok(())
    }

    /// Lines saying which reductions were made, and how sliding windows capped the cache.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match self.strategy {
            Strategy::AllGpu => notes.push("everything on the GPU".to_string()),
            Strategy::CpuLayers if self.gpu_layers() == self.layers.len() => {
                notes.push("every layer on the GPU; the output head runs on the CPU".to_string())
            }
            Strategy::CpuLayers => notes.push(format!(
                "{} of {} layers on the GPU, the rest on the CPU; the output head on the {}",
                self.gpu_layers(),
                self.layers.len(),
                self.head
            )),
        }
        if self.kv_type != self.kv_type_requested {
            notes.push(format!("KV cache {:?} instead of {:?} to fit", self.kv_type, self.kv_type_requested));
        }
        if self.n_ctx != self.n_ctx_requested {
            notes.push(format!("context {} instead of {} to fit", self.n_ctx, self.n_ctx_requested));
        }
        let capped: Vec<usize> = self.layers.iter().filter(|l| l.kv_ctx < self.n_ctx).map(|l| l.kv_ctx).collect();
        if let Some(w) = capped.first() {
            notes.push(format!("{} sliding-window layers keep only {w} positions in their KV cache", capped.len()));
        }
        notes
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Plan for {} ({}, {} layers): context {}, {:?} KV, batch {}, VRAM budget {}",
            self.model,
            self.arch,
            self.layers.len(),
            self.n_ctx,
            self.kv_type,
            self.batch,
            fmt_bytes(self.budget_bytes)
        )?;
        writeln!(f, "  {:<34} {:<11} {:>11} {:>11}", "part", "where", "VRAM", "host")?;
        self.write_globals(f)?;
        self.write_layers(f)?;
        row(f, &format!("scratch (batch {})", self.batch), "GPU", Some(self.totals.scratch), None)?;
        row(f, "staging", "GPU", Some(self.totals.staging), None)?;
        writeln!(f, "  {}", "-".repeat(70))?;
        let host = self.totals.weights_host + self.totals.kv_host;
        row(f, "total", "", Some(self.totals.gpu), Some(host))?;
        writeln!(
            f,
            "  GPU: weights {}, KV {}, scratch {}, staging {}; headroom {} of {}",
            fmt_bytes(self.totals.weights_gpu),
            fmt_bytes(self.totals.kv_gpu),
            fmt_bytes(self.totals.scratch),
            fmt_bytes(self.totals.staging),
            fmt_bytes(self.headroom_bytes),
            fmt_bytes(self.budget_bytes)
        )?;
        for note in self.notes() {
            writeln!(f, "  - {note}")?;
        }
        Ok(())
    }
}
