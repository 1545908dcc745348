//! PNG plots of a [`BenchReport`] (plotters, bitmap backend): quality against bits per weight with
//! every format labelled, and decode tokens per second per format.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::BenchReport;
use crate::error::{Error, Result};

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 600);

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: drawing the plot failed: {e}", path.display()))
}

/// (format, bpw, KL mean, PPL) of every measured format except the reference.
fn quality_points(report: &BenchReport) -> Vec<(String, f64, f64, f64)> {
    report
        .rows
        .iter()
        .filter(|r| !r.reference)
        .filter_map(|r| Some((r.format.to_string(), r.bits_per_weight, r.kl_mean?, r.ppl?)))
        .collect()
}

/// Two panels against bits per weight: mean KL divergence from the reference (log scale) and
/// perplexity (the reference's as a line). Each point is labelled with its format.
pub fn plot_quality(report: &BenchReport, path: &Path) -> Result<()> {
    let points = quality_points(report);
    if points.is_empty() {
        return Err(Error::Invalid("no quality numbers to plot (a --sizes-only report?)".into()));
    }
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!("{}: quality against size ({} scored positions)", report.model, report.scored_positions);
    let root = root.titled(&title, (FONT, 22)).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);

    let (x0, x1) = padded_range(points.iter().map(|p| p.1), 0.08);
    // KL can be 0 (or below f32 resolution) for formats that reproduce the reference: such
    // points sit on the floor of the log axis.
    let positive_min = points.iter().map(|p| p.2).filter(|&k| k > 0.0).fold(f64::MAX, f64::min);
    let floor = if positive_min == f64::MAX { 1e-9 } else { positive_min / 3.0 };
    let kl_max = points.iter().map(|p| p.2).fold(floor, f64::max) * 3.0;
    let mut chart = ChartBuilder::on(&left)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .caption("mean KL divergence from F32 (nats, log)", (FONT, 18))
        .build_cartesian_2d(x0..x1, (floor..kl_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("bits per weight (whole file)")
        .y_desc("KL")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(|e| err(&e))?;
    let at: Vec<(f64, f64)> = points.iter().map(|p| (p.1, p.2.max(floor))).collect();
    let pixels: Vec<(i32, i32)> = at.iter().map(|c| chart.backend_coord(c)).collect();
    let offsets = place_labels(&pixels, &points.iter().map(|p| p.0.as_str()).collect::<Vec<_>>());
    chart
        .draw_series(points.iter().zip(at).zip(offsets).map(|((p, at), off)| {
            EmptyElement::at(at) + Circle::new((0, 0), 5, BLUE.filled()) + Text::new(p.0.clone(), off, (FONT, 14))
        }))
        .map_err(|e| err(&e))?;

    let ppl_lo = points.iter().map(|p| p.3).chain(report.rows.iter().filter(|r| r.reference).filter_map(|r| r.ppl));
    let (p0, p1) = padded_range(ppl_lo.clone(), 0.1);
    let mut chart = ChartBuilder::on(&right)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .caption("perplexity (line: F32 reference)", (FONT, 18))
        .build_cartesian_2d(x0..x1, p0..p1)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("bits per weight (whole file)").y_desc("PPL").draw().map_err(|e| err(&e))?;
    if let Some(reference) = report.rows.iter().find(|r| r.reference).and_then(|r| r.ppl) {
        chart.draw_series(LineSeries::new([(x0, reference), (x1, reference)], BLACK.mix(0.4))).map_err(|e| err(&e))?;
    }
    let pixels: Vec<(i32, i32)> = points.iter().map(|p| chart.backend_coord(&(p.1, p.3))).collect();
    let offsets = place_labels(&pixels, &points.iter().map(|p| p.0.as_str()).collect::<Vec<_>>());
    chart
        .draw_series(points.iter().zip(offsets).map(|(p, off)| {
            EmptyElement::at((p.1, p.3))
                + Circle::new((0, 0), 5, RED.filled())
                + Text::new(p.0.clone(), off, (FONT, 14))
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// Bars of decode tokens per second, one per format in report order (the reference in grey),
/// each with its value on top.
pub fn plot_decode_speed(report: &BenchReport, path: &Path) -> Result<()> {
    let bars: Vec<(String, f64, bool)> =
        report.rows.iter().filter_map(|r| Some((r.format.to_string(), r.decode_tps?, r.reference))).collect();
    if bars.is_empty() {
        return Err(Error::Invalid("no decode speeds to plot (speed was not measured)".into()));
    }
    let err = |e: &dyn std::fmt::Display| plot_error(path, e);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let device = report.device.as_deref().unwrap_or("unknown device");
    let short_device = device.split(" (").next().unwrap_or(device);
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.15 + 1e-9;
    // An integer range is inclusive in plotters: 0..=n-1 gives one segment per bar.
    let n = bars.len() as i32 - 1;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .caption(format!("{}: decode tokens/s on {short_device}", report.model), (FONT, 22))
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)
        .map_err(|e| err(&e))?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .x_desc("format")
        .y_desc("decode tokens/s")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, reference))| {
            let color = if *reference { RGBColor(150, 150, 150) } else { RGBColor(60, 110, 200) };
            let i = i as i32;
            let mut bar =
                Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)], color.filled());
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, _))| {
            let style = (FONT, 14).into_font().into_text_style(&root).pos(Pos::new(HPos::Center, VPos::Bottom));
            Text::new(format!("{v:.2}"), (SegmentValue::CenterOf(i as i32), *v + top * 0.01), style)
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// `(min, max)` of `values` widened by `pad` of their span on each side (never empty).
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(hi.abs() * 0.05).max(1e-6);
    (lo - span * pad, hi + span * pad)
}

/// Pixel offsets of each point's label from the point: the first of a few spots around it (right
/// above, right below, left above, ...) whose box overlaps no marker and no label placed before.
/// Widths are estimated from the character count at the 14 px font.
fn place_labels(points: &[(i32, i32)], names: &[&str]) -> Vec<(i32, i32)> {
    type Box2 = (i32, i32, i32, i32);
    let overlaps = |a: Box2, b: Box2| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    let mut taken: Vec<Box2> = points.iter().map(|&(x, y)| (x - 6, y - 6, x + 6, y + 6)).collect();
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].0, points[i].1));
    let mut offsets = vec![(7, -16); points.len()];
    for i in order {
        let (x, y) = points[i];
        let w = (names[i].chars().count() as f64 * 8.5) as i32;
        let h = 15;
        let spots = [
            (7, -17),
            (7, 3),
            (-7 - w, -17),
            (-7 - w, 3),
            (7, -33),
            (7, 19),
            (-7 - w, -33),
            (-7 - w, 19),
            (-w / 2, -35),
            (-w / 2, 21),
        ];
        let fits = |&&(dx, dy): &&(i32, i32)| {
            let b = (x + dx, y + dy, x + dx + w, y + dy + h);
            !taken.iter().any(|&t| overlaps(b, t))
        };
        let (dx, dy) = *spots.iter().find(fits).unwrap_or(&spots[0]);
        taken.push((x + dx, y + dy, x + dx + w, y + dy + h));
        offsets[i] = (dx, dy);
    }
    offsets
}
