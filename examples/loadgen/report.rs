//! Figures and the printed table / JSON.

use std::time::Instant;

use serde_json::{json, Value};

use crate::client::Run;
use crate::Options;

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(values: &[u64]) -> Percentiles {
        let mut v = values.to_vec();
        v.sort_unstable();
        Percentiles {
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            p999: percentile(&v, 99.9),
            max: v.last().copied().unwrap_or(0) as f64 / 1000.0,
        }
    }

    fn json(&self) -> Value {
        json!({"p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99, "p999_ms": self.p999, "max_ms": self.max})
    }
}

/// CPU used from the start of the load until the deliveries drained.
pub struct CpuUse {
    pub gateway_s: f64,
    pub loadgen_s: f64,
    pub wall_s: f64,
}

pub struct Figures {
    pub label: String,
    pub accepted: usize,
    pub errors: usize,
    pub statuses: Vec<(u16, usize)>,
    pub accepted_per_s: f64,
    pub accept: Percentiles,
    /// (delivered count, delivered/s, accept → delivered percentiles)
    pub delivered: Option<(usize, f64, Percentiles)>,
    /// RSS before, after, peak (KiB)
    pub rss: Option<(u64, u64, u64)>,
    pub cpu: Option<CpuUse>,
}

impl Figures {
    pub fn new(
        label: &str,
        run: &Run,
        delivered: Option<(&Vec<u64>, Instant)>,
        rss: Option<(u64, u64, u64)>,
    ) -> Figures {
        let secs = run.elapsed.as_secs_f64().max(1e-9);
        let mut statuses: Vec<(u16, usize)> = run.statuses.iter().map(|(s, n)| (*s, *n)).collect();
        statuses.sort();
        Figures {
            label: label.to_string(),
            accepted: run.accepted,
            errors: run.errors,
            statuses,
            accepted_per_s: run.accepted as f64 / secs,
            accept: Percentiles::of(&run.latencies_us),
            delivered: delivered.map(|(lat, last)| {
                let span = last
                    .saturating_duration_since(run.started)
                    .as_secs_f64()
                    .max(secs);
                (lat.len(), lat.len() as f64 / span, Percentiles::of(lat))
            }),
            rss,
            cpu: None,
        }
    }

    /// Gateway CPU time per accepted message, in µs.
    fn cpu_per_message_us(&self) -> Option<f64> {
        let cpu = self.cpu.as_ref()?;
        Some(cpu.gateway_s * 1e6 / (self.accepted.max(1) as f64))
    }

    fn json(&self) -> Value {
        json!({
            "accepted": self.accepted,
            "errors": self.errors,
            "statuses": self.statuses.iter().map(|(s, n)| json!({"status": s, "count": n})).collect::<Vec<_>>(),
            "accepted_per_s": self.accepted_per_s,
            "accept_latency": self.accept.json(),
            "delivered": self.delivered.as_ref().map(|(n, rate, p)| json!({"count": n, "per_s": rate, "accept_to_delivered": p.json()})),
            "rss_kib": self.rss.map(|(b, a, p)| json!({"before_load": b, "after_load": a, "peak": p})),
            "cpu": self.cpu.as_ref().map(|c| json!({
                "gateway_seconds": c.gateway_s,
                "loadgen_seconds": c.loadgen_s,
                "wall_seconds": c.wall_s,
                "gateway_us_per_message": self.cpu_per_message_us(),
            })),
        })
    }
}

pub struct OptionsView {
    pub aliases: usize,
    pub connections: usize,
    pub rate: Option<f64>,
    pub seconds: f64,
    pub count: Option<usize>,
}

impl From<&Options> for OptionsView {
    fn from(o: &Options) -> Self {
        OptionsView {
            aliases: o.aliases,
            connections: o.connections,
            rate: o.rate,
            seconds: o.seconds,
            count: o.count,
        }
    }
}

pub struct Report {
    pub options: OptionsView,
    pub pushgate: Figures,
    pub baseline: Option<Figures>,
}

impl Report {
    pub fn print(&self) {
        let o = &self.options;
        let mode = o
            .rate
            .map(|r| format!("fixed rate {r:.0}/s"))
            .unwrap_or_else(|| "as fast as possible".into());
        println!(
            "\nload: {mode}, {} connections, {:.0}s{}, {} aliases",
            o.connections,
            o.seconds,
            o.count
                .map(|c| format!(" or {c} messages"))
                .unwrap_or_default(),
            o.aliases
        );
        println!(
            "{:<32} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "", "msgs/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        );
        let row = |label: &str, rate: f64, p: &Percentiles, errors: usize| {
            println!(
                "{label:<32} {rate:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {errors:>8}",
                p.p50, p.p90, p.p99, p.p999, p.max
            );
        };
        let f = &self.pushgate;
        row(
            "pushgate accept (202)",
            f.accepted_per_s,
            &f.accept,
            f.errors,
        );
        if let Some((n, rate, p)) = &f.delivered {
            row(
                &format!("pushgate accept→delivered ({n})"),
                *rate,
                p,
                f.accepted.saturating_sub(*n),
            );
        }
        if let Some(b) = &self.baseline {
            row(&b.label, b.accepted_per_s, &b.accept, b.errors);
            println!(
                "ratio to baseline: {:.2} (accepted/s)",
                f.accepted_per_s / b.accepted_per_s.max(1e-9)
            );
        }
        if let Some((before, after, peak)) = f.rss {
            println!(
                "gateway RSS: {:.1} MiB before load, {:.1} MiB after, {:.1} MiB peak",
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
        if let (Some(c), Some(per_message)) = (&f.cpu, f.cpu_per_message_us()) {
            let wall = c.wall_s.max(1e-9);
            println!(
                "CPU: gateway {per_message:.0} µs per message ({:.2} cores), load generator {:.2} cores",
                c.gateway_s / wall,
                c.loadgen_s / wall
            );
        }
        if f.statuses.iter().any(|(s, _)| *s != 202) {
            println!("statuses: {:?}", f.statuses);
        }
    }

    pub fn json(&self) -> Value {
        let o = &self.options;
        json!({
            "options": {"aliases": o.aliases, "connections": o.connections, "rate": o.rate, "seconds": o.seconds, "count": o.count},
            "pushgate": self.pushgate.json(),
            "baseline": self.baseline.as_ref().map(|b| b.json()),
            "ratio_to_baseline": self.baseline.as_ref().map(|b| self.pushgate.accepted_per_s / b.accepted_per_s.max(1e-9)),
        })
    }
}
