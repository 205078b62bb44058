//! A chart of a measured table, drawn from the same records (`cargo xtask measure`, `cargo
//! xtask tables`) with plotters' SVG backend: a bar per case, its time per operation on a log
//! scale (the median, with a line from the fastest to the slowest run), Rust and Python in
//! their own colours, each row other rows are compared with marked as in the table (①), and
//! the stamp of the run that measured them below. A white card, readable in the book's light
//! and dark themes alike.

use plotters::prelude::*;
use plumbing::measure::{Record, duration};

/// Where a chart's bars start: the left edge of the log axis, a little below the fastest.
fn axis(records: &[Record]) -> (f64, f64) {
    let per = |seconds: f64, r: &Record| seconds / r.ops as f64;
    let low = records.iter().map(|r| per(r.min_s, r)).fold(f64::INFINITY, f64::min);
    let high = records.iter().map(|r| per(r.max_s, r)).fold(0.0, f64::max);
    let (low, high) = if low.is_finite() && low > 0.0 { (low, high.max(low * 10.0)) } else { (1e-9, 1.0) };
    (10f64.powf(low.log10().floor()), 10f64.powf(high.log10().ceil()))
}

/// The chart of `records`, with `stamp` (where and when they were measured) below it.
pub fn svg(title: &str, stamp: &str, records: &[Record]) -> String {
    let rows = records.len().max(1);
    let (width, height) = (960u32, 90 + 26 * rows as u32 + 40);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
        root.fill(&WHITE).expect("fill an SVG");
        let (chart_area, footer) = root.split_vertically(height - 40);
        let marks = plumbing::measure::referenced(records);
        let label = |i: usize| -> String {
            let Some(r) = records.get(i) else { return String::new() };
            let case = match marks.iter().position(|c| *c == r.case) {
                Some(m) => format!("{} {}", plumbing::measure::circled(m), r.case),
                None => r.case.clone(),
            };
            let shown: String = case.chars().take(46).collect();
            if shown.len() < case.len() { format!("{shown}…") } else { shown }
        };
        let (low, high) = axis(records);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .margin_right(45)
            .x_label_area_size(30)
            .y_label_area_size(330)
            .build_cartesian_2d((low..high).log_scale(), (0..rows).into_segmented())
            .expect("a chart");
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("time per operation (log scale): the median run, and from the fastest to the slowest")
            .x_label_formatter(&|s| duration(*s))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => (rows - 1).checked_sub(*i).map(label).unwrap_or_default(),
                _ => String::new(),
            })
            .y_labels(rows)
            .label_style(("sans-serif", 12))
            .draw()
            .expect("the axes");
        for (i, r) in records.iter().enumerate() {
            let y = rows - 1 - i;
            let per = |s: f64| s / r.ops as f64;
            let colour =
                if r.implementation == "python" { RGBColor(53, 114, 165) } else { RGBColor(222, 120, 40) };
            let bar = Rectangle::new(
                [(low, SegmentValue::Exact(y)), (per(r.median_s), SegmentValue::Exact(y + 1))],
                colour.mix(0.85).filled(),
            );
            chart.draw_series(std::iter::once(bar)).expect("a bar");
            // A white edge, so that neighbouring bars stand apart.
            let edge = Rectangle::new(
                [(low, SegmentValue::Exact(y)), (per(r.median_s), SegmentValue::Exact(y + 1))],
                WHITE.stroke_width(3),
            );
            chart.draw_series(std::iter::once(edge)).expect("a bar's edge");
            let spread = PathElement::new(
                vec![(per(r.min_s), SegmentValue::CenterOf(y)), (per(r.max_s), SegmentValue::CenterOf(y))],
                BLACK.stroke_width(2),
            );
            chart.draw_series(std::iter::once(spread)).expect("a min-max line");
        }
        let legend = [("Rust", RGBColor(222, 120, 40)), ("Python", RGBColor(53, 114, 165))];
        for (k, (name, colour)) in legend.iter().enumerate() {
            let x = 20 + 110 * k as i32;
            footer.draw(&Rectangle::new([(x, 4), (x + 14, 16)], colour.filled())).expect("a key");
            footer.draw(&Text::new(*name, (x + 20, 4), ("sans-serif", 13))).expect("a key's name");
        }
        // Where and when: the stamp up to how it was measured, which the page says in full.
        let stamp: String = stamp.split(" by `").next().unwrap_or(stamp).chars().take(130).collect();
        footer.draw(&Text::new(stamp, (250, 5), ("sans-serif", 11))).expect("the stamp");
        root.present().expect("write the SVG");
    }
    text
}
