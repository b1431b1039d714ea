//! `alternator bench`: the latency/throughput table, JSON and plot.

use anyhow::Context;

use crate::bench::{compute_only, end_to_end, plot_svg, BenchResult, RunSpec, Transport};
use crate::cli::BenchArgs;

use super::UsageError;

fn parse_rates(v: &[String]) -> anyhow::Result<Vec<Option<f64>>> {
    v.iter()
        .map(|r| {
            if r == "max" {
                Ok(None)
            } else {
                match r.parse::<f64>() {
                    Ok(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
                    _ => Err(UsageError(format!("--rate {r:?}: expected a positive number of bins/s or `max`")).into()),
                }
            }
        })
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The results as a Markdown table.
pub fn table(results: &[BenchResult]) -> String {
    let mut s = String::from("| transport | channels | rate (bins/s) | admin | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | throughput bins/s | sent | received | lost | imputed | daemon p50/p99/p99.9 µs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} |\n",
            if r.mode == "compute" { "—" } else { r.transport.as_str() },
            r.channels,
            r.rate_hz.map(|x| format!("{x:.0}")).unwrap_or_else(|| "max".into()),
            r.admin.map(|a| format!("on ({} scrapes)", a.scrapes)).unwrap_or_else(|| "off".into()),
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.throughput_bins_per_s,
            r.sent,
            r.received,
            r.lost,
            r.imputed,
            r.daemon_p50_us,
            r.daemon_p99_us,
            r.daemon_p999_us
        ));
    }
    s
}

/// Without `--with-admin` every rate runs once (admin off); with it, twice
/// in a row, off then on, so the two are measured side by side.
fn admin_modes(with_admin: bool) -> impl Iterator<Item = bool> {
    [false, true].into_iter().filter(move |&on| with_admin || !on)
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        return Err(UsageError(format!("--seconds {}: expected (0, 3600]", a.seconds)).into());
    }
    if a.channels.is_empty() || a.channels.iter().any(|&c| c == 0 || c > 65536) {
        return Err(UsageError("--channels: expected a comma-separated list of counts in 1..=65536".into()).into());
    }
    let rates = parse_rates(&a.rate)?;
    let transports = a
        .transport
        .iter()
        .map(|t| {
            Transport::from_name(t).ok_or_else(|| {
                UsageError(format!(
                    "--transport {t:?}: expected protocol-v1, lsl, redis, shm or forwarder (comma-separated)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if a.shm_spin_us.iter().any(|&us| us > 20_000) {
        return Err(UsageError("--shm-spin-us: expected values in 0..=20000".into()).into());
    }
    // Each shm run once per spin setting.
    let transports: Vec<Transport> = transports
        .into_iter()
        .flat_map(|t| match t {
            Transport::Shm { .. } => a.shm_spin_us.iter().map(|&spin_us| Transport::Shm { spin_us }).collect(),
            t => vec![t],
        })
        .collect();
    println!(
        "machine: {} × {} ({} logical CPUs)",
        cpu_model(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let mut results = Vec::new();
    for &c in &a.channels {
        if a.compute_only {
            results.push(compute_only(c, a.seconds));
            continue;
        }
        let runs = rates.iter().flat_map(|r| transports.iter().map(move |t| (r, t)));
        // The forwarder has no admin server: it runs once.
        let admin_for = |t: &Transport| a.with_admin && *t != Transport::Forwarder;
        for ((&r, &t), admin) in runs.flat_map(|rt| admin_modes(admin_for(rt.1)).map(move |m| (rt, m))) {
            let spec = RunSpec {
                transport: t,
                channels: c,
                rate_hz: r,
                seconds: a.seconds,
                record: !a.no_record,
                background_training: a.with_training,
                pin: a.pin,
                admin,
            };
            let res = end_to_end(&spec)
                .with_context(|| format!("benchmark run {} {c} channels at {r:?} bins/s", t.name()))?;
            eprintln!(
                "  {} {} ch @ {}{}: p50 {:.1} µs p99 {:.1} µs (daemon p99 {:.1} µs), {:.0} bins/s, lost {}",
                t.label(),
                c,
                r.map(|x| format!("{x:.0}")).unwrap_or("max".into()),
                if admin { " with admin" } else { "" },
                res.p50_us,
                res.p99_us,
                res.daemon_p99_us,
                res.throughput_bins_per_s,
                res.lost
            );
            results.push(res);
        }
    }
    print!("{}", table(&results));
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.plot {
        std::fs::write(p, plot_svg(&results)).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
