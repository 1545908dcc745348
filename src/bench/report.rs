//! The benchmark's outputs as text: a Markdown report (the main table, what each file holds, the
//! Q4_K_M folklore check), CSV, and JSON (an array with one object per format).

use std::fmt::Write as _;

use super::sizes::{self, SizeBreakdown};
use super::{BenchReport, FormatRow};
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::model::zoo::LLAMA2_7B;
use crate::quantize::FileType;

/// `v` with `decimals` decimals, or a dash when not measured.
fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

/// KL values span 1e-7 to 1: fixed point where that reads well, scientific below.
fn kl(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(0.0) => "0".into(),
        Some(v) if v >= 1e-3 => format!("{v:.4}"),
        Some(v) => format!("{v:.1e}"),
    }
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// The seed's claim for 7B, marked ✓ when it is our size rounded to its one decimal.
fn seed_cell(row: &FormatRow) -> String {
    let Some(claim) = row.seed_7b_gb else { return String::new() };
    let ours = gb(row.llama2_7b_bytes);
    if sizes::holds_when_rounded(claim, ours, 1) {
        format!("{claim:.1} ✓")
    } else {
        format!("{claim:.1} ✗ ({:+.1} %)", (claim / ours - 1.0) * 100.0)
    }
}

/// llama.cpp's published size, marked ✓ when it is our size rounded to its two decimals.
fn published_cell(row: &FormatRow) -> String {
    let Some(published) = row.llama2_7b_published_gb else { return String::new() };
    let ours = gb(row.llama2_7b_bytes);
    let mark = if sizes::holds_when_rounded(published, ours, 2) { "✓" } else { "✗" };
    format!("{published:.2} {mark}")
}

/// The main table (one line per format).
pub fn markdown_table(report: &BenchReport) -> String {
    let mut s = String::new();
    s += "| format | file MB | bpw | Llama-2-7B GB (recipe) | llama.cpp 7B GB | seed 7B GB | PPL | KL mean | KL p99 | top-1 | matvec GB/s | ÷ read BW | prompt tok/s | decode tok/s |\n";
    s += "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for r in &report.rows {
        let name = if r.reference { format!("{} (reference)", r.format) } else { r.format.to_string() };
        let _ = writeln!(
            s,
            "| {name} | {:.2} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.file_bytes as f64 / 1e6,
            r.bits_per_weight,
            gb(r.llama2_7b_bytes),
            published_cell(r),
            seed_cell(r),
            num(r.ppl, 3),
            kl(r.kl_mean),
            kl(r.kl_p99),
            r.top1_agreement.map_or_else(|| "–".into(), |v| format!("{:.1} %", v * 100.0)),
            num(r.matvec_gbps, 2),
            num(r.read_bw_ratio, 2),
            num(r.prefill_tps, 1),
            num(r.decode_tps, 2),
        );
    }
    s
}

/// `Q8_0 62.5 % (8.50)` for each type, most weights first.
pub fn type_mix(types: &[sizes::TypeShare]) -> String {
    let parts: Vec<String> = types
        .iter()
        .map(|t| format!("{} {:.1} % ({:.2})", t.ty, t.weight_fraction * 100.0, t.bits_per_weight))
        .collect();
    parts.join(" · ")
}

/// One line per format: the tensor types it holds, their share of the weights and their bpw.
pub fn mix_table(report: &BenchReport) -> String {
    let mut s = String::from("| format | bpw | tensor types: share of weights (bits per weight) |\n|---|--:|---|\n");
    for r in &report.rows {
        let _ = writeln!(s, "| {} | {:.3} | {} |", r.format, r.bits_per_weight, type_mix(&r.types));
    }
    s
}

/// A per-type table of one breakdown.
pub fn breakdown_table(b: &SizeBreakdown) -> String {
    let mut s =
        String::from("| type | tensors | weights | share of weights | bytes | bpw |\n|---|--:|--:|--:|--:|--:|\n");
    for t in &b.types {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} % | {} | {:.4} |",
            t.ty,
            t.tensors,
            t.weights,
            t.weight_fraction * 100.0,
            t.bytes,
            t.bits_per_weight
        );
    }
    let _ = writeln!(
        s,
        "| **all** | {} | {} | 100 % | {} | **{:.4}** |",
        b.types.iter().map(|t| t.tensors).sum::<usize>(),
        b.n_weights,
        b.tensor_bytes,
        b.bits_per_weight()
    );
    s
}

/// Bits per weight over the quantized tensors alone (leaving out F32 norms and F16 / F32 copies).
fn quantized_bpw(b: &SizeBreakdown) -> Option<f64> {
    let q: Vec<_> = b.types.iter().filter(|t| t.ty.is_quantized()).collect();
    let w: u64 = q.iter().map(|t| t.weights).sum();
    (w > 0).then(|| q.iter().map(|t| t.bytes).sum::<u64>() as f64 * 8.0 / w as f64)
}

/// The folklore check: what a Q4_K_M file really holds, for the benchmarked model and for
/// Llama-2-7B's shapes, against "Q4_K_M averages 4.5 bits per weight" and "Q4_K_M is built from
/// 6/4/3-bit importance clusters".
pub fn q4_k_m_folklore(report: &BenchReport) -> Result<String> {
    let seven = sizes::shape_breakdown(&LLAMA2_7B, FileType::Q4_K_M)?;
    let mut s = String::from("### What Q4_K_M files hold\n\n");
    if let Some(row) = report.row(FileType::Q4_K_M) {
        let b = SizeBreakdown { n_weights: row.n_weights, tensor_bytes: row.tensor_bytes, types: row.types.clone() };
        let _ = writeln!(s, "{} (Q4_K_M):\n\n{}", report.model, breakdown_table(&b));
        s += &verdict(&b);
        s += "\n";
    }
    let _ = writeln!(s, "Llama-2-7B shapes (Q4_K_M recipe):\n\n{}", breakdown_table(&seven));
    s += &verdict(&seven);
    Ok(s)
}

/// Plain sentences on the two claims for one breakdown.
fn verdict(b: &SizeBreakdown) -> String {
    let bpw = b.bits_per_weight();
    let qbpw = quantized_bpw(b).unwrap_or(bpw);
    let bits = |ty: GgmlType| -> &'static str {
        match ty {
            GgmlType::Q2_K => "2",
            GgmlType::Q3_K => "3",
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K | GgmlType::IQ4_NL | GgmlType::IQ4_XS => "4",
            GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K => "5",
            GgmlType::Q6_K => "6",
            GgmlType::Q8_0 => "8",
            GgmlType::F16 | GgmlType::BF16 => "16",
            GgmlType::F32 => "32",
        }
    };
    let present: Vec<String> = b.types.iter().map(|t| format!("{} ({}-bit)", t.ty, bits(t.ty))).collect();
    let has_3bit = b.types.iter().any(|t| t.ty == GgmlType::Q3_K);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- \"Q4_K_M averages 4.5 bpw\": {}. The whole file averages **{bpw:.3} bpw** ({qbpw:.3} over the quantized tensors alone); 4.5 is the bpw of the Q4_K block format itself (144 bytes per 256 weights), not of a Q4_K_M file.",
        if (bpw - 4.5).abs() < 0.05 { "holds" } else { "does not hold" }
    );
    let _ = writeln!(
        s,
        "- \"6/4/3-bit importance clusters\": the file holds {}. {}Types are chosen per tensor by name and layer index (llama.cpp's recipe), not per weight by importance.",
        present.join(", "),
        if has_3bit { "" } else { "There is no 3-bit tensor. " }
    );
    s
}

/// The whole Markdown report: header, main table, type mix, folklore check, notes.
pub fn markdown(report: &BenchReport) -> Result<String> {
    let mut s = String::new();
    let _ = writeln!(s, "## Formats of {}\n", report.model);
    match &report.device {
        Some(device) => {
            let _ = writeln!(s, "Device: {device}; kernel times by {}.", report.timing.as_deref().unwrap_or("?"));
        }
        None => s += "Sizes only (from shapes and recipes; nothing quantized or run).\n",
    }
    if let Some(text) = &report.text {
        let _ = writeln!(
            s,
            "Quality: {} chunks of {} tokens of `{text}`, {} scored positions; KL over the full vocabulary against the F32 reference.",
            report.chunks, report.n_ctx, report.scored_positions
        );
    }
    if let (Some(bw), Some(sp)) = (report.read_bw_gbps, &report.speed) {
        let _ = writeln!(
            s,
            "Speed: streaming read {bw:.2} GB/s; prompt of {} tokens, {} decode tokens, best of {}.",
            sp.prompt_tokens, sp.decode_tokens, sp.reps
        );
    }
    let _ =
        writeln!(s, "Source file: {:.3} bpw ({}).", report.source.bits_per_weight(), type_mix(&report.source.types));
    if report.source.types.iter().any(|t| t.ty.is_quantized()) && report.device.is_some() {
        s += "Caveat: the source is already quantized, so the F32 reference is its dequantized weights, not the \
              original full-precision model. Every KL is a distance from the source's weights: a format that \
              reproduces the source's blocks (its own recipe) scores KL ≈ 0 by construction, and formats finer \
              than the source cannot show what they would keep of the original.\n";
    }
    s += "\n";
    s += &markdown_table(report);
    s += "\nLlama-2-7B GB: tensor bytes of the same recipe for Llama-2-7B's shapes. ✓: the published or claimed number is ours rounded to its decimals.\n\n";
    s += &mix_table(report);
    s += "\n";
    s += &q4_k_m_folklore(report)?;
    Ok(s)
}

/// One line for progress logs.
pub fn one_line(r: &FormatRow) -> String {
    format!(
        "{}: {:.2} MB, {:.3} bpw, PPL {}, KL {}, top-1 {}, decode {} tok/s",
        r.format,
        r.file_bytes as f64 / 1e6,
        r.bits_per_weight,
        num(r.ppl, 3),
        kl(r.kl_mean),
        num(r.top1_agreement, 3),
        num(r.decode_tps, 2)
    )
}

/// The CSV header; [`csv`] writes one line per format under it.
pub const CSV_COLUMNS: [&str; 20] = [
    "format",
    "reference",
    "file_bytes",
    "tensor_bytes",
    "n_weights",
    "bits_per_weight",
    "llama2_7b_bytes",
    "llama2_7b_published_gb",
    "seed_7b_gb",
    "ppl",
    "kl_mean",
    "kl_p99",
    "kl_max",
    "top1_agreement",
    "matvec_gbps",
    "read_bw_ratio",
    "prefill_tps",
    "decode_tps",
    "quantize_seconds",
    "types",
];

/// CSV with [`CSV_COLUMNS`]; empty cells where nothing was measured; `types` lists
/// `TYPE:weight_fraction:bpw` separated by spaces.
pub fn csv(report: &BenchReport) -> String {
    let o = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    let mut s = CSV_COLUMNS.join(",") + "\n";
    for r in &report.rows {
        let types: Vec<String> =
            r.types.iter().map(|t| format!("{}:{}:{}", t.ty, t.weight_fraction, t.bits_per_weight)).collect();
        let cells = [
            r.format.to_string(),
            r.reference.to_string(),
            r.file_bytes.to_string(),
            r.tensor_bytes.to_string(),
            r.n_weights.to_string(),
            r.bits_per_weight.to_string(),
            r.llama2_7b_bytes.to_string(),
            o(r.llama2_7b_published_gb),
            o(r.seed_7b_gb),
            o(r.ppl),
            o(r.kl_mean),
            o(r.kl_p99),
            o(r.kl_max),
            o(r.top1_agreement),
            o(r.matvec_gbps),
            o(r.read_bw_ratio),
            o(r.prefill_tps),
            o(r.decode_tps),
            o(r.quantize_seconds),
            types.join(" "),
        ];
        s += &cells.join(",");
        s += "\n";
    }
    s
}

/// JSON: an array with one object per format (the fields of [`FormatRow`], plus `model`,
/// `device`, `n_ctx`, `chunks` and `scored_positions` so each object stands alone).
pub fn json(report: &BenchReport) -> Result<String> {
    let to_json = |e: serde_json::Error| Error::Invalid(format!("JSON: {e}"));
    let mut rows = Vec::new();
    for r in &report.rows {
        let mut v = serde_json::to_value(r).map_err(to_json)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("model".into(), report.model.clone().into());
            obj.insert("device".into(), report.device.clone().into());
            obj.insert("n_ctx".into(), report.n_ctx.into());
            obj.insert("chunks".into(), report.chunks.into());
            obj.insert("scored_positions".into(), report.scored_positions.into());
        }
        rows.push(v);
    }
    serde_json::to_string_pretty(&rows).map_err(to_json)
}
