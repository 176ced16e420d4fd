//! The report's PNG: one panel per table, a metric (percent) against shots on an axis fitted to
//! the data, one line per label with error bars of one standard deviation over seeds.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::fsutil;

/// One label's points: (shots, mean, std), fractions; std `None` for a single seed.
pub struct Line {
    pub label: String,
    pub points: Vec<(i64, f64, Option<f64>)>,
}

pub struct Panel {
    pub title: String,
    pub y_desc: String,
    pub lines: Vec<Line>,
}

const FONT_PATHS: [&str; 2] =
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

/// Panels of this size, two side by side.
const PANEL: (u32, u32) = (820, 520);
const COLUMNS: usize = 2;
const CAPTION: u32 = 40;

/// `panels` under `title`, replacing `path` whole.
pub fn write_png(panels: &[Panel], path: &Path, title: &str) -> Result<()> {
    if panels.is_empty() {
        bail!("{}: nothing to plot", path.display());
    }
    fsutil::write_atomically_with(path, |tmp| draw(panels, tmp, title))
}

pub(super) fn register_font() -> Result<()> {
    let font = FONT_PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .context("no DejaVuSans.ttf for the plot's text; install Debian's fonts-dejavu-core")?;
    // plotters keeps registered fonts for the process's lifetime.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow!("DejaVuSans.ttf could not be loaded"))
}

fn draw(panels: &[Panel], path: &Path, title: &str) -> Result<()> {
    register_font()?;
    let columns = panels.len().min(COLUMNS);
    let rows = panels.len().div_ceil(COLUMNS);
    let size = (PANEL.0 * columns as u32, PANEL.1 * rows as u32 + CAPTION);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root.titled(title, ("sans-serif", 26)).map_err(|e| fail(&e))?;
    let areas = root.split_evenly((rows, columns));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(panel, area).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// The y range in percent: every mean ± std with a margin of a tenth of the span (at least a
/// point), so differences of a point or two stay visible; never beyond 0-100.
pub fn y_range(panel: &Panel) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, mean, std) in panel.lines.iter().flat_map(|l| &l.points) {
        let sd = std.unwrap_or(0.0);
        lo = lo.min(100.0 * (mean - sd));
        hi = hi.max(100.0 * (mean + sd));
    }
    if !lo.is_finite() {
        return 0.0..100.0;
    }
    let margin = ((hi - lo) * 0.1).max(1.0);
    (lo - margin).max(0.0)..(hi + margin).min(100.0)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn draw_panel(panel: &Panel, area: &Area) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut shots: Vec<i64> = panel.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).collect();
    shots.sort_unstable();
    shots.dedup();
    // Shot counts are evenly spaced whatever their values (1, 4, 16 are a log scale's steps).
    let x_of = |s: i64| shots.iter().position(|&v| v == s).unwrap_or(0) as f64;
    let mut builder = ChartBuilder::on(area);
    if !panel.title.is_empty() {
        builder.caption(&panel.title, ("sans-serif", 18));
    }
    let mut chart = builder
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(-0.3f64..(shots.len() as f64 - 0.7), y_range(panel))
        .map_err(|x| e(&x))?;
    let labels = shots.clone();
    chart
        .configure_mesh()
        .x_desc("shots per class")
        .y_desc(panel.y_desc.as_str())
        .x_labels(shots.len())
        .x_label_formatter(&|x| labels.get(x.round() as usize).map(|s| s.to_string()).unwrap_or_default())
        .draw()
        .map_err(|x| e(&x))?;
    let n = panel.lines.len();
    for (i, line) in panel.lines.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        // A small horizontal offset per line keeps error bars from hiding each other.
        let dx = (i as f64 - n as f64 / 2.0) * 0.03;
        let xy: Vec<(f64, f64)> = line.points.iter().map(|p| (x_of(p.0) + dx, 100.0 * p.1)).collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), colour.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(xy.iter().map(|&(x, y)| Circle::new((x, y), 4, colour.filled()))).map_err(|x| e(&x))?;
        let bars = line.points.iter().filter_map(|&(s, m, sd)| {
            let (x, m, sd) = (x_of(s) + dx, 100.0 * m, 100.0 * sd?);
            Some(PathElement::new(vec![(x, m - sd), (x, m + sd)], colour.stroke_width(1)))
        });
        chart.draw_series(bars).map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_is_fitted_to_the_error_bars_within_0_to_100() {
        let line = |points| Line { label: "x".into(), points };
        let panel = |lines| Panel { title: String::new(), y_desc: String::new(), lines };
        // 60 ± 2 and 64: bars span 58-64, a margin of a point each side (a tenth is less).
        let r = y_range(&panel(vec![line(vec![(1, 0.60, Some(0.02)), (4, 0.64, None)])]));
        assert!((r.start - 57.0).abs() < 1e-9 && (r.end - 65.0).abs() < 1e-9, "{r:?}");
        // Never beyond 0-100, and the whole range without points.
        let r = y_range(&panel(vec![line(vec![(1, 0.01, Some(0.05)), (4, 0.99, Some(0.05))])]));
        assert_eq!((r.start, r.end), (0.0, 100.0));
        assert_eq!(y_range(&panel(Vec::new())), 0.0..100.0);
    }
}
