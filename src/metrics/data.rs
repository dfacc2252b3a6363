//! The per-series data gauges — spend, line items, usage and traffic: one sample for every
//! stored series, 220,000 of them in the bench's large world. Kept as sorted, pre-escaped
//! lines instead of prometheus `GaugeVec`s: the registry's `gather` copies every sample into
//! protobuf structs on each scrape (0.9 s and hundreds of MB at that size), while these are
//! written straight into the response.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// One gauge family: its name, help text and label names (sorted, as the exposition wants).
pub(super) struct DataFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

pub(super) struct DataGauges {
    families: &'static [DataFamily],
    /// Per family: rendered label set (`{a="x",b="y"}`) → value. A BTreeMap keeps the
    /// output in a stable order.
    samples: Mutex<Vec<BTreeMap<String, f64>>>,
}

/// A label value escaped for the text format: backslash, double quote and newline.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

impl DataGauges {
    pub fn new(families: &'static [DataFamily]) -> Self {
        DataGauges {
            families,
            samples: Mutex::new(families.iter().map(|_| BTreeMap::new()).collect()),
        }
    }

    /// Sets the sample of `family` (an index into the families) for `values`, given in the
    /// order of the family's label names.
    pub fn set(&self, family: usize, values: &[&str], value: f64) {
        let Some(spec) = self.families.get(family) else {
            return;
        };
        let mut labels = String::with_capacity(16 * values.len());
        labels.push('{');
        for (i, (name, v)) in spec.labels.iter().zip(values).enumerate() {
            if i > 0 {
                labels.push(',');
            }
            labels.push_str(name);
            labels.push_str("=\"");
            escape_into(&mut labels, v);
            labels.push('"');
        }
        labels.push('}');
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(family) = samples.get_mut(family) {
            family.insert(labels, value);
        }
    }

    /// The size the rendered text will roughly have, to allocate once.
    pub fn estimated_len(&self) -> usize {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .zip(self.families)
            .map(|(s, f)| s.keys().map(|k| k.len() + f.name.len() + 24).sum::<usize>())
            .sum()
    }

    /// Appends every family that has samples, in the text exposition format.
    pub fn render_into(&self, out: &mut String) {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        for (family, spec) in samples.iter().zip(self.families) {
            if family.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {} {}", spec.name, spec.help);
            let _ = writeln!(out, "# TYPE {} gauge", spec.name);
            for (labels, value) in family {
                out.push_str(spec.name);
                out.push_str(labels);
                out.push(' ');
                write_value(out, *value);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FAMILIES: &[DataFamily] = &[
        DataFamily {
            name: "t_spend",
            help: "Spend.",
            labels: &["account", "item"],
        },
        DataFamily {
            name: "t_empty",
            help: "Never set.",
            labels: &["account"],
        },
    ];

    #[test]
    fn renders_sorted_escaped_samples_and_skips_empty_families() {
        let g = DataGauges::new(FAMILIES);
        g.set(0, &["b", "x"], 2.5);
        g.set(0, &["a", "say \"hi\"\\\n"], f64::NAN);
        g.set(0, &["b", "x"], 3.0);
        g.set(0, &["c", "big"], 1e21);
        g.set(7, &["ignored"], 1.0);
        let mut out = String::new();
        g.render_into(&mut out);
        assert_eq!(
            out,
            "# HELP t_spend Spend.\n# TYPE t_spend gauge\n\
             t_spend{account=\"a\",item=\"say \\\"hi\\\"\\\\\\n\"} NaN\n\
             t_spend{account=\"b\",item=\"x\"} 3\n\
             t_spend{account=\"c\",item=\"big\"} 1000000000000000000000\n"
        );
        assert!(g.estimated_len() > 0);
    }
}
